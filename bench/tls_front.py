#!/usr/bin/env python3
"""A TLS terminator in front of a plain TCP port, for `bench/relay` only.

Puts the emulator behind `https://`/`wss://` with a self-signed certificate, as
production endpoints are: accepts TLS on LISTEN_PORT and copies bytes both ways to
TARGET_PORT on 127.0.0.1, one thread per direction. It never imports sshkit.

Usage: bench/tls_front.py LISTEN_PORT TARGET_PORT CERT KEY  (prints "ready" when listening)
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading

CHUNK = 256 << 10


def copy(src: socket.socket, dst: socket.socket) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while size := src.recv_into(buffer):
            dst.sendall(view[:size])
    except OSError:
        pass
    try:
        if isinstance(dst, ssl.SSLSocket):
            dst.close()
        else:
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(raw: socket.socket, target_port: int, tls: ssl.SSLContext) -> None:
    try:
        client = tls.wrap_socket(raw, server_side=True)
        target = socket.create_connection(("127.0.0.1", target_port))
    except (OSError, ssl.SSLError):
        raw.close()
        return
    for sock in (client, target):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=copy, args=(client, target), daemon=True)
    up.start()
    copy(target, client)
    up.join()
    client.close()
    target.close()


def main() -> int:
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client, target_port, tls), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
