#!/usr/bin/env bash
# The container root for the systemd integration test (Tests/IntegrationTests/NspawnServiceTests.swift):
# a minimal Debian 12 made by debootstrap with systemd and the service's runtime libraries, and nothing
# of Swift. It is built once per machine and kept outside the repository, read-only; every test run
# boots it with a throwaway overlay (`systemd-nspawn --volatile=overlay`), so runs never change it.
#
#   scripts/nspawn.sh root    prints the root's path, building it first when it is missing (about
#                             80 s and 250 MB; a lock makes concurrent runs wait for one build)
#   scripts/nspawn.sh check   exits 1 with the reason when this machine cannot boot the container
#
# AFTERIMAGE_NSPAWN_CACHE (default /var/cache/afterimage-test) says where roots are kept;
# AFTERIMAGE_DEBIAN_MIRROR overrides the mirror (default: the one apt uses for bookworm).
set -euo pipefail

suite=bookworm
# The service's runtime packages (README, "Install as a service") plus systemd and D-Bus to boot.
# Changing the list (or `layout`) makes a new root; old ones can be deleted by hand.
runtime_packages=(libmicrohttpd12 libpq5 libcurl4 ca-certificates)
boot_packages=(systemd dbus)
layout=1
cache=${AFTERIMAGE_NSPAWN_CACHE:-/var/cache/afterimage-test}

fail() { echo "nspawn: $*" >&2; exit 1; }

check() {
  [ "$(id -u)" = 0 ] || fail "systemd-nspawn and debootstrap need root (this is uid $(id -u))"
  local tool
  for tool in systemd-nspawn debootstrap nsenter flock; do
    command -v "$tool" >/dev/null || fail "$tool is missing: scripts/setup.sh installs systemd-container and debootstrap"
  done
  [ -d /sys/fs/cgroup ] || fail "no /sys/fs/cgroup: this kernel or sandbox has no cgroups, which systemd needs as PID 1"
  unshare --pid --mount --fork true 2>/dev/null \
    || fail "cannot create PID and mount namespaces here (unshare failed): containers are not possible in this sandbox"
}

mirror() {
  if [ -n "${AFTERIMAGE_DEBIAN_MIRROR:-}" ]; then echo "$AFTERIMAGE_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk -v s="$suite" '$2 == s { print $1; exit }')
  echo "${uri:-http://deb.debian.org/debian/}"
}

root() {
  check
  local packages key dir tmp log
  packages=$(IFS=,; echo "${boot_packages[*]},${runtime_packages[*]}")
  key=$(printf '%s %s %s' "$suite" "$packages" "$layout" | sha256sum | cut -c1-12)
  dir="$cache/$suite-$key"
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -f "$dir/etc/afterimage-test-root" ]; then
    tmp="$cache/.building-$key"
    log="$cache/$suite-$key.log"
    rm -rf "$tmp"
    echo "nspawn: building the container root with debootstrap ($suite: $packages) in $dir" >&2
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$(mirror)" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      rm -rf "$tmp"
      fail "debootstrap failed (log: $log): no Debian mirror reachable, or the packages changed"
    fi
    # Nothing of apt's downloads is needed again; the marker says the root is complete.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    echo "$packages" >"$tmp/etc/afterimage-test-root"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  echo "$dir"
}

case "${1:-}" in
  root) root ;;
  check) check ;;
  *) echo "usage: $0 root|check" >&2; exit 64 ;;
esac
