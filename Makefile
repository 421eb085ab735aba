# The two set-up commands of the README, plus install targets for operators.
.PHONY: run test build

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	swift build -c release --product afterimage
