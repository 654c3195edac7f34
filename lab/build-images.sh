#!/usr/bin/env bash
# Build the lab images locally from Debian packages (no container registry is reachable).
# Each image's tag is a hash of its recipe, so an image is rebuilt only when its recipe changes.
#   homelab-lab/systemd:<hash>   Debian 13 with systemd as PID 1: a lab host
#   homelab-lab/debian:<hash>    Debian 13 minbase: the base of the service images below
#   homelab-lab/caddy:<hash>     Debian's caddy, laid out like the upstream caddy:2 image
#   homelab-lab/postgres:<hash>  Debian's PostgreSQL, with an entrypoint compatible with postgres:16-alpine
# Prints "NAME=REF" lines (LAB_IMAGE, LAB_DEBIAN_IMAGE, LAB_CADDY_IMAGE, LAB_POSTGRES_IMAGE) for callers
# to eval; inventory/lab and the molecule scenarios read the image names from them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=${LAB_SUITE:-trixie}
mirror=${LAB_MIRROR:-}
if [ -z "$mirror" ]; then
  # Use the mirror this machine's apt already uses (deb822 or one-line sources).
  mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n1 | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

log() { printf '[lab-images] %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_rootfs_image() { # name include-list
  local ref=$1 include=$2 dir
  have_image "$ref" && { log "cached $ref"; return; }
  dir=$(mktemp -d /var/tmp/homelab-rootfs.XXXXXX)
  log "debootstrap $suite ($include) from $mirror -> $ref"
  debootstrap --variant=minbase --include="$include" "$suite" "$dir" "$mirror" >/var/tmp/homelab-debootstrap.log 2>&1 \
    || { tail -n 30 /var/tmp/homelab-debootstrap.log >&2; rm -rf "$dir"; exit 1; }
  # Point apt inside the image at the same mirror and keep images small.
  printf 'deb %s %s main\n' "$mirror" "$suite" > "$dir/etc/apt/sources.list"
  # Units that cannot work in a container would leave systemd "degraded"; systemd-sysctl would
  # write Debian's sysctl.d defaults into the kernel this machine shares with its lab hosts.
  if [ -d "$dir/etc/systemd/system" ]; then
    ln -sf /dev/null "$dir/etc/systemd/system/systemd-modules-load.service"
    ln -sf /dev/null "$dir/etc/systemd/system/systemd-sysctl.service"
  fi
  # Keep apt lists: a real server has them, and apt's cache_valid_time judges their age.
  rm -rf "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -c . | docker import -c 'ENV container=docker' -c 'CMD ["/bin/bash"]' - "$ref" >/dev/null
  rm -rf "$dir"
}

build_dockerfile_image() { # ref dir base
  local ref=$1 dir=$2 base=$3
  have_image "$ref" && { log "cached $ref"; return; }
  log "docker build $ref"
  docker build -q --build-arg "BASE=$base" -t "$ref" "$dir" >/var/tmp/homelab-build.log 2>&1 \
    || { tail -n 30 /var/tmp/homelab-build.log >&2; exit 1; }
}

systemd_pkgs="python3,python3-apt,systemd,systemd-sysv,sudo,ca-certificates,iproute2,procps"
# Bump RECIPE when build_rootfs_image changes in a way that alters the images.
RECIPE=4
lab_ref="homelab-lab/systemd:$(echo "$RECIPE $suite $systemd_pkgs" | sha256sum | cut -c1-12)"
deb_ref="homelab-lab/debian:$(echo "$RECIPE $suite ca-certificates" | sha256sum | cut -c1-12)"
build_rootfs_image "$lab_ref" "$systemd_pkgs"
build_rootfs_image "$deb_ref" "ca-certificates"

caddy_ref="homelab-lab/caddy:$(echo "$deb_ref" | cat - "$here"/images/caddy/* | sha256sum | cut -c1-12)"
pg_ref="homelab-lab/postgres:$(echo "$deb_ref" | cat - "$here"/images/postgres/* | sha256sum | cut -c1-12)"
build_dockerfile_image "$caddy_ref" "$here/images/caddy" "$deb_ref"
build_dockerfile_image "$pg_ref" "$here/images/postgres" "$deb_ref"

echo "LAB_IMAGE=$lab_ref"
echo "LAB_DEBIAN_IMAGE=$deb_ref"
echo "LAB_CADDY_IMAGE=$caddy_ref"
echo "LAB_POSTGRES_IMAGE=$pg_ref"
