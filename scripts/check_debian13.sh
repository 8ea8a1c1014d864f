#!/usr/bin/env bash
# The Debian 13 check (issue: set-up on today's Debian): a clean clone of this repository's
# HEAD runs `make setup`, `make test` and `make demo` in a fresh Debian root made by
# debootstrap, as a new user on that release would. Not part of `make test` (it downloads
# Debian's ROS packages and, on Python 3.13, PyPI's torch: see docs/install.md).
#
#   sudo scripts/check_debian13.sh [ROOT_DIR]        # default /var/tmp/evdistill-trixie
#   SUITE=bookworm sudo scripts/check_debian13.sh /var/tmp/evdistill-bookworm   # the same on Debian 12
#   STEPS="setup test" ...                          # a subset (default: setup test demo)
#
# Needs root, debootstrap and network access to deb.debian.org and PyPI. The root is kept (a
# second run reuses it and the clone is made afresh); delete ROOT_DIR to start from nothing.
# Local CA certificates (/usr/local/share/ca-certificates, e.g. a proxy's) are copied in, so
# pip and apt inside trust what the host trusts. Times go to ROOT_DIR.times.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE="${SUITE:-trixie}"
TARGET="$(realpath -m "${1:-/var/tmp/evdistill-$SUITE}")"
STEPS="${STEPS:-setup test demo}"
TIMES="$TARGET.times"
log() { printf '\033[1m[check %s]\033[0m %s\n' "$SUITE" "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "check_debian13: run as root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "check_debian13: install debootstrap (apt-get install debootstrap)" >&2; exit 1; }

if [ ! -x "$TARGET/usr/bin/python3" ]; then
  log "debootstrap $SUITE into $TARGET"
  start=$(date +%s)
  debootstrap --variant=minbase --include=ca-certificates,git,make,python3,python3-venv \
    "$SUITE" "$TARGET" http://deb.debian.org/debian >"$TARGET.debootstrap.log" 2>&1 ||
    { tail -20 "$TARGET.debootstrap.log" >&2; exit 1; }
  echo "debootstrap $(( $(date +%s) - start )) s" >"$TARGET.debootstrap.time"
fi
cat "$TARGET.debootstrap.time" 2>/dev/null >"$TIMES" || : >"$TIMES"  # this run's times only

mounted=()
cleanup() { for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc sys dev dev/pts dev/shm; do
  mkdir -p "$TARGET/$m"
  mountpoint -q "$TARGET/$m" || { mount --bind "/$m" "$TARGET/$m" && mounted+=("$TARGET/$m"); }
done
cp /etc/resolv.conf "$TARGET/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$TARGET/usr/local/share/ca-certificates/"
  chroot "$TARGET" update-ca-certificates >/dev/null 2>&1
fi

log "clean clone of $(git -C "$REPO" rev-parse --short HEAD) into $TARGET/root/evdistill"
rm -rf "$TARGET/root/evdistill"
git clone -q "$REPO" "$TARGET/root/evdistill"

# a login-like environment: nothing of the host's venv, pip configuration or PYTHONPATH leaks in
in_root() {
  chroot "$TARGET" env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/evdistill && $1"
}
log "$(in_root '. /etc/os-release; echo "$PRETTY_NAME, $(python3 --version)"')"
for step in $STEPS; do
  log "make $step"
  start=$(date +%s)
  if in_root "make $step" 2>&1 | tee "$TARGET.$step.log" | tail -15; then status=ok; else status=FAILED; fi
  echo "make $step: $status in $(( $(date +%s) - start )) s" | tee -a "$TIMES"
  [ "$status" = ok ] || exit 1
done
log "venv: $(du -sh "$TARGET/root/evdistill/.venv" | cut -f1); pip cache: $(du -sh "$TARGET/root/.cache/pip" 2>/dev/null | cut -f1)"
cat "$TIMES"
