#!/usr/bin/env python3
"""Open noVNC's websocket through Caddy and speak RFB (the VNC protocol) to the server behind it.

Run on the lab host: rfb_probe.py SNI CAFILE PASSWORD [PATH]. Connects to 127.0.0.1:443 over TLS
(SNI, Caddy's CA), upgrades GET /PATH to a websocket as noVNC does, reads the server's protocol
banner, chooses VNC authentication, answers the challenge with PASSWORD (DES via the openssl CLI,
as the stdlib has no DES) and prints JSON: {status, banner, security_types, auth, reason}.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import sys


def vnc_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication: DES-ECB of the challenge, keyed by the password with each byte's bits reversed."""
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    return subprocess.run(
        ["openssl", "enc", "-des-ecb", "-provider", "legacy", "-provider", "default", "-nopad", "-K", key.hex()],
        input=challenge, capture_output=True, check=True,
    ).stdout


class WebSocket:
    """The client side of RFC 6455, just enough for binary RFB traffic."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            b0, b1 = self._exact(2)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._exact(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else b""
            payload = self._exact(size)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if b0 & 0x0F == 8:
                raise EOFError("websocket closed by the server")
            if b0 & 0x0F in (0, 1, 2):
                self.buf += payload
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data: bytes) -> None:
        mask = os.urandom(4)
        size = len(data)
        header = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0x80 | 126]) + struct.pack("!H", size)
        self.sock.sendall(header + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))


def main() -> None:
    sni, cafile, password = sys.argv[1:4]
    path = sys.argv[4] if len(sys.argv) > 4 else "websockify"
    result: dict = {}
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=sni) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {sni}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
            f"Origin: https://{sni}\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)
            if not byte:
                break
            head += byte
        result["status"] = int(head.split(b" ", 2)[1]) if head else 0
        if result["status"] != 101:
            print(json.dumps(result))
            return
        ws = WebSocket(sock)
        result["banner"] = ws.read(12).decode()
        ws.send(b"RFB 003.008\n")
        count = ws.read(1)[0]
        result["security_types"] = list(ws.read(count)) if count else []
        if 2 not in result["security_types"]:
            print(json.dumps(result))
            return
        ws.send(bytes([2]))
        ws.send(vnc_response(password, ws.read(16)))
        status = struct.unpack("!I", ws.read(4))[0]
        result["auth"] = "ok" if status == 0 else "failed"
        if status != 0:
            result["reason"] = ws.read(struct.unpack("!I", ws.read(4))[0]).decode(errors="replace")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
