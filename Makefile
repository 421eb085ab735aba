# The two set-up commands of the README, plus install targets for operators.
.PHONY: run test build install uninstall

run:
	scripts/run.sh

test:
	scripts/test.sh

# The binary to install: the Swift runtime linked in (--static-swift-stdlib), so a server needs only
# Debian's own libraries (README, "Install as a service"), never a Swift toolchain. Its own scratch
# folder keeps these flags from fighting the development build in .build. `make test` builds the same
# binary with CONFIGURATION=debug (a release build of swift-crypto takes much longer) for the
# container test.
CONFIGURATION ?= release
STATIC_SCRATCH ?= .build-static

build:
	swift build -c $(CONFIGURATION) --static-swift-stdlib --scratch-path $(STATIC_SCRATCH) --product afterimage

# `make demo`, beside a running `make run`: one signed Replicate webhook carrying a small PNG, then the
# lookup and a presigned URL (`afterimage demo --config .local/config.json`). AFTERIMAGE_BINARY picks
# another afterimage build, as for `make run`.
.PHONY: demo
demo:
	@test -f .local/config.json || { echo "demo: no .local/config.json yet: start the daemon with 'make run' (in another terminal) first" >&2; exit 1; }
	@bin="$${AFTERIMAGE_BINARY:-.build/release/afterimage}"; \
	  test -x "$$bin" || { echo "demo: $$bin is not built yet: 'make run' builds it" >&2; exit 1; }; \
	  "$$bin" demo --config .local/config.json

# `make install` (as root): the release binary, the systemd units, the example configuration and the
# migrations. PREFIX (default /usr/local) and DESTDIR (staging root for packagers and tests) apply as
# usual; the units' ExecStart= and ExecReload= are rewritten to $(PREFIX)/bin. The binary is BINARY
# (default: `make build`'s, made first when missing); build it as yourself (`make build`), since
# sudo's PATH usually has no swift, then `sudo make install`.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DATADIR ?= $(PREFIX)/share/afterimage
DOCDIR ?= $(PREFIX)/share/doc/afterimage
SYSCONFDIR ?= /etc/afterimage
BINARY ?= $(STATIC_SCRATCH)/$(CONFIGURATION)/afterimage

install:
	@test -x "$(BINARY)" || $(MAKE) build
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(DATADIR)/migrations" "$(DESTDIR)$(DOCDIR)"
	install -d -m 0755 "$(DESTDIR)$(SYSCONFDIR)"
	install -d -m 0700 "$(DESTDIR)$(SYSCONFDIR)/credentials"
	install -m 0755 "$(BINARY)" "$(DESTDIR)$(BINDIR)/afterimage"
	for unit in afterimage.service afterimage.socket; do \
	  sed -e 's#/usr/local/bin/afterimage#$(BINDIR)/afterimage#g' -e 's#/usr/local/share/doc/afterimage#$(DOCDIR)#g' \
	    "systemd/$$unit" > "$(DESTDIR)$(UNITDIR)/$$unit" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$$unit"; \
	done
	install -m 0644 config/afterimage.example.json "$(DESTDIR)$(SYSCONFDIR)/afterimage.example.json"
	install -m 0644 migrations/*.sql "$(DESTDIR)$(DATADIR)/migrations/"
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"

# Removes what `install` put in place; /etc/afterimage/afterimage.json and the credentials you wrote,
# and the spool under /var/lib/afterimage, are yours and stay.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/afterimage" "$(DESTDIR)$(UNITDIR)/afterimage.service" "$(DESTDIR)$(UNITDIR)/afterimage.socket"
	rm -f "$(DESTDIR)$(SYSCONFDIR)/afterimage.example.json" "$(DESTDIR)$(DOCDIR)/README.md"
	rm -rf "$(DESTDIR)$(DATADIR)"
	-rmdir "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(SYSCONFDIR)/credentials" "$(DESTDIR)$(SYSCONFDIR)" 2>/dev/null
