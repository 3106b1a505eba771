"""`sshkit relay`: ssh's ProxyCommand, stdin/stdout ⇄ the tunnel websocket.

stdout carries the SSH byte stream only; every message goes to stderr (through
the CLI's error boundary) and to the opt-in log.
"""

from __future__ import annotations

import signal
from types import FrameType

from sshkit.relay.liveness import peer_gone_check
from sshkit.relay.log import RelayLog
from sshkit.relay.pump import Channel, Pump, PumpResult
from sshkit.relay.stdio import DEFAULT_CHUNK, FdSink, FdSource
from sshkit.relay.ws import TunnelTarget, close_error

# How often the main thread looks at signals and at ssh's end of the pipes. A relay
# whose ssh died must not linger (VS Code users have found hundreds of orphaned relays).
POLL_INTERVAL = 0.2


def strip_suffix(host: str, suffix: str | None) -> str:
    """The session name in `host`: `SESSION<SUFFIX>` loses the suffix (wildcard Host blocks)."""
    if suffix and host.endswith(suffix) and len(host) > len(suffix):
        return host[: -len(suffix)]
    return host


def run_stdio_relay(
    channel: Channel,
    target: TunnelTarget,
    *,
    log: RelayLog | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    chunk: int = DEFAULT_CHUNK,
) -> PumpResult:
    """Pump stdin → `channel` → stdout until the channel closes, a signal or ssh is gone.

    ssh is gone when stdin ends or nobody reads stdout any more (`sshkit.relay.liveness`);
    the parent process exiting means nothing while the pipes are in use (`ssh -f`,
    ControlPersist).

    Returns the result on a clean end (the server closed normally, stdin ended,
    SIGHUP/SIGTERM, ssh went away). Raises RelayError when the tunnel failed.
    """
    # Stdout stays open until the outcome is known: ssh answers EOF on it by printing
    # its own "Connection closed" and hanging up on us, which could cut off our
    # error line. On an error the process exit closes it, after the line is out.
    sink = FdSink(stdout_fd, hold_open=True)
    pump = Pump(FdSource(stdin_fd, chunk), sink, channel)
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    previous = {}
    for name in ("SIGHUP", "SIGTERM"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, on_signal)
    peer_gone = peer_gone_check(stdout_fd)
    try:
        pump.start()
        while not pump.wait(POLL_INTERVAL):
            if pump.result.stopped:
                continue
            if signals:
                if log:
                    log.write(f"signal {signals[0]}: closing")
                pump.stop()
            elif (why := peer_gone()) is not None:
                if log:
                    log.write(f"{why}: closing")
                pump.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    result = pump.result
    if log:
        log.write(
            f"done: up {result.bytes_up} B in {result.messages_up} messages, "
            f"down {result.bytes_down} B in {result.messages_down} messages, "
            f"stdin ended={result.source_ended}, close={result.close}, "
            f"stdout error={result.sink_error}"
        )
        log.write_usage()
    if result.stopped or result.sink_error is not None:
        sink.release()
        return result
    error = close_error(result.close, target, mid_stream=result.bytes_down > 0)
    if error is not None:
        raise error
    sink.release()
    return result
