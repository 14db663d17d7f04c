#!/usr/bin/env bash
# `make base-image`: a Debian Python base image built without any image registry.
#
# A debootstrap minbase of a pinned Debian suite, from the Debian mirror that this machine's apt is
# configured with, plus Debian's python3.11 (the Python the wheelhouse is built for), with the
# suite's security and point-release updates applied; then imported as a local image. Needs root
# (debootstrap, chroot) and a reachable Debian mirror; needs no image registry.
#
#   docker/base-image.sh [TAG]          default tag: trading/python:3.11-bookworm
#
# Settings (environment): SUITE (bookworm), MIRROR (the first deb.debian.org-style URI of apt's
# sources that serves $SUITE), PACKAGES (what apt adds to minbase, space-separated).
set -euo pipefail

TAG="${1:-trading/python:3.11-bookworm}"
SUITE="${SUITE:-bookworm}"
# python3.11-venv brings ensurepip's pip wheel (the images' venv is made with it); tzdata the
# zoneinfo database the market calendars read; no compilers, no pip outside the venv.
PACKAGES="${PACKAGES:-python3.11 python3.11-venv tzdata}"

[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image: apt-get install debootstrap" >&2; exit 1; }

# The mirror apt uses for the main archive (deb822 .sources or one-line sources.list).
apt_sources() { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; }
if [ -z "${MIRROR:-}" ]; then
  MIRROR="$(apt_sources | awk '
    /^URIs:/ { uri = $2 } /^Suites:/ { if ($0 ~ /[ \t]'"$SUITE"'([ \t]|$)/ && uri !~ /security/) { print uri; exit } }
    /^deb[ \t]/ && $3 == "'"$SUITE"'" { print $2; exit }')"
fi
[ -n "$MIRROR" ] || { echo "base-image: no apt source serves $SUITE; set MIRROR" >&2; exit 1; }
SECURITY="$(apt_sources | awk '/^URIs:/ && /security/ { print $2; exit } /^deb[ \t]/ && $3 ~ /security/ { print $2; exit }')"
SECURITY="${SECURITY:-${MIRROR%/debian}/debian-security}"

ROOTFS="$(mktemp -d /var/tmp/trading-base.XXXXXX)"
cleanup() { umount "$ROOTFS/proc" 2>/dev/null || true; rm -rf "$ROOTFS"; }
trap cleanup EXIT

echo "base-image: debootstrap --variant=minbase $SUITE from $MIRROR, then $PACKAGES"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -5 "$ROOTFS.log" >&2; tail -30 "$ROOTFS/debootstrap/debootstrap.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# The suite's updates and security fixes, from the same mirrors, and Python (apt, not
# debootstrap's --include, resolves its dependencies).
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive PACKAGES="$PACKAGES" sh -c \
  'apt-get update -qq && apt-get upgrade -y -qq \
   && apt-get install -y -qq --no-install-recommends $PACKAGES && apt-get clean' \
  >"$ROOTFS.log" 2>&1 || { tail -30 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
umount "$ROOTFS/proc"

# What a runtime image never reads: package lists, caches, docs, man pages, other locales.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/usr/share/locale/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
# Debian calls it python3; the official image, the Dockerfiles and the probes say python.
ln -sf python3 "$ROOTFS/usr/bin/python"

tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap minbase $SUITE + $PACKAGES from $MIRROR" \
  - "$TAG" >/dev/null
echo "base-image: $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
