#!/usr/bin/env python3
"""The relay's download path alone: websocket frames from TCP into a pipe, splice vs copy.

A sender process writes SIZE MiB as 256 KiB binary frames (as the manager sends
them) on loopback; this process runs the relay's `WebSocketChannel` and `Pump`
into a pipe read by `cat > /dev/null`, once with `os.splice` and once with the
copying path (SSHKIT_RELAY_SPLICE=0), in turn, RUNS times. No ssh, no server
work: what the relay itself costs per GiB downloaded. Prints JSON (medians of
MB/s and of this process's CPU seconds per GiB). `bench/relay` runs it.

Usage: bench/relay_datapath.py [RUNS] [SIZE_MIB]
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sshkit.relay.pump import Pump
from sshkit.relay.stdio import FdSink
from sshkit.relay.ws import WebSocketChannel

SENDER = r"""
import os, socket, struct, sys
port, total = int(sys.argv[1]), int(sys.argv[2])
frame = 256 << 10
payload = os.urandom(frame)
head = struct.pack("!BBQ", 0x82, 127, frame)
s = socket.create_connection(("127.0.0.1", port))
for _ in range(total // frame):
    s.sendmsg([head, payload])
s.sendall(struct.pack("!BBH", 0x88, 2, 1000))
try:
    while s.recv(65536):
        pass
except OSError:
    pass
"""


class _NoInput:
    def read(self) -> bytes:
        time.sleep(3600)
        return b""


def one_run(splice: bool, total: int) -> tuple[float, float]:
    """(MB/s, CPU seconds of this process) for `total` bytes."""
    os.environ["SSHKIT_RELAY_SPLICE"] = "1" if splice else "0"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(listener.getsockname()[1]), str(total)]
        )
        sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    cat = subprocess.Popen(["sh", "-c", "cat > /dev/null"], stdin=subprocess.PIPE)
    assert cat.stdin is not None
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    channel = WebSocketChannel(sock, b"", ping_interval=None)
    pump = Pump(_NoInput(), FdSink(os.dup(cat.stdin.fileno())), channel)
    pump.start()
    pump.wait()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cat.stdin.close()
    cat.wait()
    sender.wait()
    if pump.result.bytes_down != total:
        raise SystemExit(f"moved {pump.result.bytes_down} of {total} bytes")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return total / elapsed / 1e6, cpu


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    size = (int(sys.argv[2]) if len(sys.argv) > 2 else 1024) << 20
    results: dict[str, dict[str, list[float]]] = {
        "splice": {"MBps": [], "cpu_s": []},
        "copy": {"MBps": [], "cpu_s": []},
    }
    for _ in range(runs):
        for name in results:
            mbps, cpu = one_run(name == "splice", size)
            results[name]["MBps"].append(mbps)
            results[name]["cpu_s"].append(cpu)
    gib = size / (1 << 30)
    report = {
        name: {
            **values,
            "MBps_median": statistics.median(values["MBps"]),
            "cpu_s_per_GiB_median": statistics.median(values["cpu_s"]) / gib,
        }
        for name, values in results.items()
    }
    print(json.dumps({"size_MiB": size >> 20, "runs": runs, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
