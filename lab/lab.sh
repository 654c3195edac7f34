#!/usr/bin/env bash
# Start, stop and list the lab hosts: Debian 13 containers with systemd as PID 1 and room for a
# Docker engine of their own, the targets of inventory/lab. Flags per shared/notes/lab-hosts.md.
#   lab/lab.sh up [N]     start N lab hosts (default 1): homelab-lab-1 .. homelab-lab-N
#   lab/lab.sh down       remove them (their anonymous /var/lib/docker volumes too)
#   lab/lab.sh run NAME   start one lab host called NAME (molecule's create step uses this)
#   lab/lab.sh rm NAME    remove it
#   lab/lab.sh status     list them
#   lab/lab.sh flags      print the docker run flags (used by molecule/shared too)
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

flags() {
  local c
  for c in "${caps[@]}"; do printf -- '--cap-add=%s\n' "$c"; done
  printf -- '%s\n' --security-opt=seccomp=unconfined --security-opt=apparmor=unconfined \
    --security-opt=systempaths=unconfined --cgroupns=host -v=/sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs=/run --tmpfs=/run/lock --tmpfs=/tmp -v=/var/lib/docker
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
  local name=$1 f
  if docker inspect "$name" >/dev/null 2>&1; then
    docker start "$name" >/dev/null
  else
    : "${LAB_IMAGE:=$("$here/build-images.sh" | sed -n 's/^LAB_IMAGE=//p')}"
    mapfile -t f < <(flags)
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
  rm) docker rm -f -v "${2:?usage: $0 rm NAME}" >/dev/null 2>&1 || true ;;
  down)
    ids=$(docker ps -aq --filter label=homelab-lab=1 --filter "name=^$prefix-")
    [ -z "$ids" ] || docker rm -f -v $ids >/dev/null
    ;;
  status) docker ps -a --filter label=homelab-lab=1 --format '{{.Names}}\t{{.Status}}' ;;
  flags) flags ;;
  *) echo "usage: $0 up [N] | down | status | flags" >&2; exit 2 ;;
esac
