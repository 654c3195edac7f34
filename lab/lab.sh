#!/usr/bin/env bash
# Start, stop and list the lab hosts: Debian 13 containers with systemd as PID 1 and room for a
# Docker engine of their own, the targets of inventory/lab. Flags and why: lab/README.md.
#   lab/lab.sh up [N]     start N lab hosts (default 1): homelab-lab-1 .. homelab-lab-N
#   lab/lab.sh down       remove them (their /var/lib/docker volumes too)
#   lab/lab.sh run NAME   start one lab host called NAME (molecule's create step uses this)
#   lab/lab.sh rm NAME    remove it
#   lab/lab.sh status     list them
#   lab/lab.sh flags      print the docker run flags
# A host of a platform-ready image (label homelab-lab.platform, lab/images/platform) gets a
# /var/lib/docker volume of its own (NAME-docker) copied from the seed volume LAB_DOCKER_SEED
# (lab/build-images.sh): its engine starts with the service images already loaded. Other hosts get
# an anonymous volume there. LAB_DOCKER_VOLUME names the volume to use as is (build-images.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${LAB_PREFIX:-homelab-lab}

# Every capability but SYS_RESOURCE (not in this machine's bounding set), BPF, PERFMON and
# CHECKPOINT_RESTORE (docker 20.10 rejects them), and SYS_TIME: a lab host must never set the
# machine's clock (the kernel clock is shared; a timezone/hwclock change once moved it an hour).
caps=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
  NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
  SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE
  AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ)

flags() { # [VOLUME for /var/lib/docker; default: an anonymous one]
  local c
  for c in "${caps[@]}"; do printf -- '--cap-add=%s\n' "$c"; done
  printf -- '%s\n' --security-opt=seccomp=unconfined --security-opt=apparmor=unconfined \
    --security-opt=systempaths=unconfined --cgroupns=host -v=/sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs=/run --tmpfs=/run/lock --tmpfs=/tmp "-v=${1:+$1:}/var/lib/docker"
}

docker_volume() { # NAME IMAGE: print the volume for NAME's /var/lib/docker (seeded), or nothing
  local name=$1 image=$2 vol=$1-docker
  if [ -n "${LAB_DOCKER_VOLUME:-}" ]; then echo "$LAB_DOCKER_VOLUME"; return; fi
  [ "$(docker image inspect -f '{{index .Config.Labels "homelab-lab.platform"}}' "$image" 2>/dev/null)" = 1 ] || return 0
  [ -n "${LAB_DOCKER_SEED:-}" ] && docker volume inspect "$LAB_DOCKER_SEED" >/dev/null 2>&1 || return 0
  docker volume rm -f "$vol" >/dev/null 2>&1 || true
  docker volume create --label homelab-lab=1 --label "homelab-lab.host=$name" "$vol" >/dev/null
  # cp -a keeps the inner overlay2 layers as they are: whiteouts (device files), and the
  # trusted.overlay.* attributes of opaque directories, which only CAP_SYS_ADMIN may read and write.
  # A seed without its completion mark (its build was stopped) is not used: the host gets an empty one.
  docker run --rm --name "$name-seed-copy" --label homelab-lab=1 --cap-add=SYS_ADMIN --network=none \
    -v "$LAB_DOCKER_SEED:/from:ro" -v "$vol:/to" "$image" \
    sh -c 'test ! -f /from/.homelab-seed-complete || cp -a /from/. /to/' >&2 \
    || { docker volume rm -f "$vol" >/dev/null 2>&1; return 1; }
  echo "$vol"
}

wait_running() {
  local name=$1 state
  for _ in $(seq 60); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    [ "$state" = running ] && return 0
    sleep 1
  done
  echo "lab host $name did not boot (systemd says: ${state:-nothing})" >&2
  docker logs --tail 20 "$name" >&2 || true
  return 1
}

start_host() { # NAME: start (or restart) one lab host and wait for systemd
  local name=$1 f vol
  if docker inspect "$name" >/dev/null 2>&1; then
    docker start "$name" >/dev/null
  else
    : "${LAB_IMAGE:=$("$here/build-images.sh" | sed -n 's/^LAB_IMAGE=//p')}"
    vol=$(docker_volume "$name" "$LAB_IMAGE")
    mapfile -t f < <(flags "$vol")
    docker run -d --name "$name" --hostname "$name" --label homelab-lab=1 "${f[@]}" \
      "$LAB_IMAGE" /lib/systemd/systemd >/dev/null
  fi
  wait_running "$name"
  echo "$name up"
}

case "${1:-status}" in
  up)
    for i in $(seq 1 "${2:-1}"); do start_host "$prefix-$i"; done
    ;;
  run) start_host "${2:?usage: $0 run NAME}" ;;
  rm)
    # The copy into its /var/lib/docker volume too, if the host is removed while it is being created.
    docker rm -f -v "${2:?usage: $0 rm NAME}" "$2-seed-copy" >/dev/null 2>&1 || true
    docker volume rm -f "$2-docker" >/dev/null 2>&1 || true
    ;;
  down)
    ids=$(docker ps -aq --filter label=homelab-lab=1 --filter "name=^$prefix-")
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null
    docker volume ls -q --filter label=homelab-lab=1 | grep "^$prefix-" | xargs -r docker volume rm -f >/dev/null || true
    ;;
  status) docker ps -a --filter label=homelab-lab=1 --format '{{.Names}}\t{{.Status}}' ;;
  flags) flags ;;
  *) echo "usage: $0 up [N] | down | status | flags" >&2; exit 2 ;;
esac
