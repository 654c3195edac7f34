#!/usr/bin/env bash
# Build the lab images locally from Debian packages (no container registry is reachable).
# Each image's tag is a hash of its recipe, so an image is rebuilt only when its recipe changes.
#   homelab-lab/systemd:<hash>   Debian 13 with systemd as PID 1: a lab host
#   homelab-lab/debian:<hash>    Debian 13 minbase: the base of the service images below
#   homelab-lab/caddy:<hash>     Debian's caddy, laid out like the upstream caddy:2 image
#   homelab-lab/postgres:<hash>  Debian's PostgreSQL, with an entrypoint compatible with postgres:16-alpine
#   homelab-lab/redis:<hash>     Debian's Redis, standing in for redis:7-alpine
#   homelab-lab/standin:<hash>   an HTTP stand-in for images no registry gives us (n8n, Plex, ...)
#   homelab-lab/node:<hash>      Debian's Node.js, the base the bot roles build on in tests
#   homelab-lab/python:<hash>    Debian's Python, standing in for python:3.12-slim
#   homelab-lab/dashboard:<hash> the web UI's image from webui/Dockerfile, on that Python
#   homelab-lab/vnc-desktop:<hash>  roles/vnc_desktop/files/image built on the Debian base (the role's own Dockerfile)
#   homelab-lab/platform:<hash>  the lab host with what every converged host installs anyway (images/platform)
#   volumes homelab-lab-seed-<hash>  a lab host engine's /var/lib/docker holding the service images
#                                (LAB_DOCKER_SEED); lab/lab.sh copies it into each platform host
# Prints "NAME=REF" lines (LAB_IMAGE: the platform image, LAB_BARE_IMAGE: the bare one, LAB_DOCKER_SEED, LAB_DEBIAN_IMAGE, LAB_CADDY_IMAGE, LAB_POSTGRES_IMAGE, LAB_REDIS_IMAGE, LAB_STANDIN_IMAGE, LAB_NODE_IMAGE, LAB_VNC_IMAGE, LAB_PYTHON_IMAGE, LAB_DASHBOARD_IMAGE) for callers
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
redis_ref="homelab-lab/redis:$(echo "$deb_ref" | cat - "$here"/images/redis/* | sha256sum | cut -c1-12)"
build_dockerfile_image "$redis_ref" "$here/images/redis" "$deb_ref"
# Stand-ins for images we cannot pull (n8n, Plex, Home Assistant, ...) and the Node base the bots build on.
standin_ref="homelab-lab/standin:$(echo "$deb_ref" | cat - "$here"/images/standin/* | sha256sum | cut -c1-12)"
node_ref="homelab-lab/node:$(echo "$deb_ref" | cat - "$here"/images/node/* | sha256sum | cut -c1-12)"
build_dockerfile_image "$standin_ref" "$here/images/standin" "$deb_ref"
build_dockerfile_image "$node_ref" "$here/images/node" "$deb_ref"
# The vnc_desktop role's own Dockerfile, built here because lab hosts have no registry for its base.
vnc_ref="homelab-lab/vnc-desktop:$(echo "$deb_ref" | cat - "$here"/../roles/vnc_desktop/files/image/* | sha256sum | cut -c1-12)"
build_dockerfile_image "$vnc_ref" "$here/../roles/vnc_desktop/files/image" "$deb_ref"
# Debian's Python standing in for python:3.12-slim, trusting this machine's extra CAs (pip reaches
# PyPI through them), and the dashboard (the web UI) built on it from webui/Dockerfile, tagged by
# a hash of what the image holds: the Dockerfile, pyproject.toml, requirements.lock, the packages.
cas=(); for f in /usr/local/share/ca-certificates/*.crt; do [ -f "$f" ] && cas+=("$f"); done
python_ref="homelab-lab/python:$(echo "$deb_ref" | cat - "$here"/images/python/* ${cas[@]+"${cas[@]}"} | sha256sum | cut -c1-12)"
if ! have_image "$python_ref"; then
  ctx=$(mktemp -d /var/tmp/homelab-python.XXXXXX); cp -r "$here"/images/python/. "$ctx"; mkdir -p "$ctx/ca"
  [ ${#cas[@]} -eq 0 ] || cp "${cas[@]}" "$ctx/ca/"
  build_dockerfile_image "$python_ref" "$ctx" "$deb_ref"; rm -rf "$ctx"
fi
dashboard_ref="homelab-lab/dashboard:$( { echo "$python_ref"; cd "$here/.." && find webui/Dockerfile .dockerignore pyproject.toml \
  requirements.lock webui/homelab jarvis -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)"
if have_image "$dashboard_ref"; then log "cached $dashboard_ref"; else
  log "docker build $dashboard_ref (pip installs from PyPI: a few minutes)"
  docker build -q --build-arg "BASE=$python_ref" -f "$here/../webui/Dockerfile" -t "$dashboard_ref" "$here/.." \
    >/var/tmp/homelab-build.log 2>&1 || { tail -n 30 /var/tmp/homelab-build.log >&2; exit 1; }
fi

# The platform-ready lab host (the base and docker scenarios use the bare one, LAB_BARE_IMAGE).
platform_ref="homelab-lab/platform:$(echo "$lab_ref" | cat - "$here"/images/platform/* | sha256sum | cut -c1-12)"
build_dockerfile_image "$platform_ref" "$here/images/platform" "$lab_ref"

# The seed: what a lab host's engine holds after `docker load` of the images nearly every service
# scenario loads (caddy, postgres, redis, the stand-in, Debian), built once in a throwaway platform host
# (systemd and dockerd as on every lab host) with the engine stopped cleanly; lab/lab.sh copies it
# to a new host's /var/lib/docker (cp -a: ~4x faster than docker save|load). The big images only
# some scenarios use (node, vnc-desktop, the dashboard, which changes with every web UI edit) stay
# out: copying 3 GB into every host costs more disk bandwidth than loading them where needed, and
# lab/prepare.yml loads whatever image a scenario asks for and its host lacks.
seed_hash() { { echo "$platform_ref"; for i in "$@"; do docker image inspect -f '{{.Id}}' "$i"; done; } | sha256sum | cut -c1-12; }
fill_seed() { # VOLUME FROM-VOLUME|"" IMAGE...: a throwaway platform host whose /var/lib/docker is VOLUME loads the images
  local vol=$1 from=$2 seeder="homelab-lab-seeding-$$" i; shift 2
  if [ -n "$from" ]; then
    docker run --rm --cap-add=SYS_ADMIN --network=none -v "$from:/from:ro" -v "$vol:/to" "$platform_ref" cp -a /from/. /to/ || return 1
  fi
  LAB_IMAGE=$platform_ref LAB_DOCKER_VOLUME=$vol "$here/lab.sh" run "$seeder" >/dev/null || return 1
  docker exec "$seeder" systemctl start docker || return 1
  for i in "$@"; do
    docker exec "$seeder" docker image inspect "$i" >/dev/null 2>&1 && continue
    docker save "$i" | docker exec -i "$seeder" docker load -q >/dev/null || return 1
  done
  docker exec "$seeder" systemctl stop docker.socket docker.service containerd.service || return 1
  docker rm -f -v "$seeder" >/dev/null
  # Last: the mark lab/lab.sh copies only from (a build killed half-way leaves no usable seed).
  docker run --rm --network=none -v "$vol:/v" "$platform_ref" touch /v/.homelab-seed-complete
}
build_seed() { # VOLUME FROM-VOLUME|"" IMAGE...
  local vol=$1
  if docker volume inspect "$vol" >/dev/null 2>&1; then
    if docker run --rm --network=none -v "$vol:/v:ro" "$platform_ref" test -f /v/.homelab-seed-complete; then
      log "cached volume $vol"; return
    fi
    docker volume rm -f "$vol" >/dev/null  # left half-filled by a build that was stopped
  fi
  log "seeding volume $vol (${*:3})"
  docker volume create --label homelab-lab.seed=1 "$vol" >/dev/null
  if ! fill_seed "$@"; then
    docker rm -f -v "homelab-lab-seeding-$$" >/dev/null 2>&1; docker volume rm -f "$vol" >/dev/null 2>&1
    log "seeding $vol failed"; exit 1
  fi
}
common_images=("$caddy_ref" "$pg_ref" "$redis_ref" "$standin_ref" "$deb_ref")
seed="homelab-lab-seed-$(seed_hash "${common_images[@]}")"
# Seeds of older recipes go (a seed is only ever copied from, so none is in use).
docker volume ls -q --filter label=homelab-lab.seed=1 | grep -vxF -e "$seed" | xargs -r docker volume rm >/dev/null 2>&1 || true
build_seed "$seed" "" "${common_images[@]}"

echo "LAB_IMAGE=$platform_ref"
echo "LAB_BARE_IMAGE=$lab_ref"
echo "LAB_DOCKER_SEED=$seed"
echo "LAB_DEBIAN_IMAGE=$deb_ref"
echo "LAB_CADDY_IMAGE=$caddy_ref"
echo "LAB_POSTGRES_IMAGE=$pg_ref"
echo "LAB_REDIS_IMAGE=$redis_ref"
echo "LAB_STANDIN_IMAGE=$standin_ref"
echo "LAB_NODE_IMAGE=$node_ref"
echo "LAB_VNC_IMAGE=$vnc_ref"
echo "LAB_PYTHON_IMAGE=$python_ref"
echo "LAB_DASHBOARD_IMAGE=$dashboard_ref"
