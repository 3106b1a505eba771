#!/usr/bin/env python3
"""A lean websocket-to-TCP bridge, for `bench/relay` only: how fast can the relay go
when the server side costs little?

It answers any websocket upgrade (no authentication, no routing) and bridges the
connection to one TCP port, with two blocking threads and no asyncio: sshd → client
reads up to 256 KiB and sends each read as one binary frame (as the manager does,
spec §6.2); client → sshd unmasks payloads as they arrive, without waiting for the
end of a frame. Pings are answered; a close frame is echoed and ends the bridge.

Not a model of the server (that is `tests/emulator`); a yardstick. It never imports
sshkit.

Usage: bench/lean_bridge.py LISTEN_PORT TARGET_PORT [CERT KEY]  (prints "ready" when
listening; with CERT and KEY it serves TLS, wss://)
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import struct
import sys
import threading

from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK = 256 << 10


def handshake(client: socket.socket) -> bytes:
    """Answer the upgrade; return the bytes that came after the request."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = client.recv(65536)
        if not more:
            raise EOFError
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    client.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return rest


def header(opcode: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def downstream(target: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while size := target.recv_into(buffer):
            with lock:
                if isinstance(client, ssl.SSLSocket):  # no sendmsg on TLS sockets
                    client.sendall(header(0x2, size) + view[:size])
                else:
                    client.sendmsg([header(0x2, size), view[:size]])
        with lock:
            client.sendall(header(0x8, 2) + struct.pack("!H", 1001))
    except OSError:
        pass


def upstream(
    rest: bytes, client: socket.socket, target: socket.socket, lock: threading.Lock
) -> None:
    buffer = bytearray(1 << 20)
    pending = bytearray(rest)
    in_frame = False
    opcode = remaining = offset = 0
    mask = b""
    control = bytearray()
    while True:
        pos = 0
        while True:
            if not in_frame:
                # A header: 2 bytes, the extended length, then the 4-byte mask.
                if len(pending) - pos < 2:
                    break
                length = pending[pos + 1] & 0x7F
                size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + 4
                if len(pending) - pos < size:
                    break
                opcode = pending[pos] & 0x0F
                if length == 126:
                    (length,) = struct.unpack_from("!H", pending, pos + 2)
                elif length == 127:
                    (length,) = struct.unpack_from("!Q", pending, pos + 2)
                mask = bytes(pending[pos + size - 4 : pos + size])
                pos += size
                in_frame, remaining, offset = True, length, 0
            take = min(remaining, len(pending) - pos)
            payload = b""
            if take:
                # Unmask what is here now; the key turns with the offset in the frame.
                rotated = mask[offset % 4 :] + mask[: offset % 4]
                payload = apply_mask(memoryview(pending)[pos : pos + take], rotated)
                pos += take
                remaining -= take
                offset += take
            if opcode >= 0x8:
                control += payload
            elif payload:
                target.sendall(payload)
            if remaining:
                break  # the rest of this frame is still on its way
            in_frame = False
            if opcode == 0x8:
                with lock:
                    client.sendall(header(0x8, len(control)) + bytes(control))
                target.shutdown(socket.SHUT_WR)
                return
            if opcode == 0x9:
                with lock:
                    client.sendall(header(0xA, len(control)) + bytes(control))
            control.clear()
        del pending[:pos]
        size = client.recv_into(buffer)
        if not size:
            target.shutdown(socket.SHUT_WR)
            return
        pending += memoryview(buffer)[:size]


def bridge(client: socket.socket, target_port: int, tls: ssl.SSLContext | None) -> None:
    with client:
        try:
            if tls is not None:
                client = tls.wrap_socket(client, server_side=True)
            rest = handshake(client)
            target = socket.create_connection(("127.0.0.1", target_port))
        except (OSError, EOFError, ssl.SSLError):
            return
        with target:
            for sock in (client, target):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            lock = threading.Lock()
            down = threading.Thread(target=downstream, args=(target, client, lock), daemon=True)
            down.start()
            try:
                upstream(rest, client, target, lock)
            except OSError:
                pass
            down.join()


def main() -> int:
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    tls = None
    if len(sys.argv) == 5:  # CERT KEY: serve wss:// (TLS in this process, as a server would)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(16)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=bridge, args=(client, target_port, tls), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
