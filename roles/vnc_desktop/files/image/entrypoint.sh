#!/bin/bash
# Start the desktop: the VNC password from the environment into ~/.vnc/passwd (then dropped from
# the environment), Xtigervnc on 127.0.0.1:5900 with VncAuth, openbox and an xterm, and websockify
# serving noVNC on $NOVNC_PORT. The container ends when the X server or websockify does, so the
# restart policy brings the whole desktop back.
set -euo pipefail

if [ "${#VNC_PASSWORD}" -lt 6 ]; then
  echo "vnc-desktop: VNC_PASSWORD must be set (at least 6 characters)" >&2
  exit 1
fi
mkdir -p "$HOME/.vnc"
umask 077
passwd_tool=$(command -v tigervncpasswd || command -v vncpasswd)
printf '%s\n' "$VNC_PASSWORD" | "$passwd_tool" -f > "$HOME/.vnc/passwd"
chmod 0600 "$HOME/.vnc/passwd"
unset VNC_PASSWORD
rm -f /tmp/.X1-lock /tmp/.X11-unix/X1

Xtigervnc "$DISPLAY" -localhost -rfbport 5900 -rfbauth "$HOME/.vnc/passwd" \
  -SecurityTypes VncAuth -AlwaysShared -geometry "$VNC_GEOMETRY" -depth "$VNC_DEPTH" \
  -desktop "${VNC_DESKTOP_NAME:-homelab}" &
xpid=$!
for _ in $(seq 50); do [ -S /tmp/.X11-unix/X1 ] && break; sleep 0.1; done

openbox-session >/dev/null 2>&1 &
xterm >/dev/null 2>&1 &
websockify --web /usr/share/novnc "$NOVNC_PORT" 127.0.0.1:5900 &
wpid=$!

trap 'kill "$xpid" "$wpid" 2>/dev/null || true' TERM INT
wait -n "$xpid" "$wpid"
