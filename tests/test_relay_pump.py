"""The pump with in-memory parts: both directions, EOF either way, big payloads, close codes."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from sshkit.errors import RelayError
from sshkit.relay.pump import CloseInfo, Pump
from sshkit.relay.ws import TunnelTarget, close_error
from tests.relay_fakes import MemoryChannel, MemorySink, MemorySource

TARGET = TunnelTarget("demo-session")


def echo_server(channel: MemoryChannel, *, close_code: int = 1000) -> threading.Thread:
    """Echo what the client sends; answer its close with `close_code`."""

    def run() -> None:
        while True:
            data = channel.peer_recv()
            if data is None:
                channel.peer_close(close_code)
                return
            channel.peer_send(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_bytes_flow_both_ways_and_stdin_eof_half_closes() -> None:
    channel = MemoryChannel()
    server = echo_server(channel)
    sink = MemorySink()
    result = Pump(MemorySource([b"abc", b"def"]), sink, channel).run()
    server.join(5)
    assert bytes(sink.data) == b"abcdef"
    assert sink.closed
    assert result.source_ended
    assert channel.close_sent == 1000
    assert result.close == CloseInfo(1000, "", initiated_by_us=True)
    assert close_error(result.close, TARGET) is None
    assert (result.bytes_up, result.bytes_down) == (6, 6)


def test_downstream_keeps_draining_after_stdin_eof() -> None:
    channel = MemoryChannel()
    sink = MemorySink()
    pump = Pump(MemorySource([b"bye"]), sink, channel)
    pump.start()
    assert channel.peer_recv() == b"bye"
    assert channel.peer_recv() is None  # our half-close arrived
    assert not pump.wait(0.1)  # still draining
    channel.peer_send(b"late reply 1")
    channel.peer_send(b"late reply 2")
    channel.peer_close(1000)
    assert pump.wait(5)
    assert bytes(sink.data) == b"late reply 1late reply 2"
    assert pump.result.close is not None and pump.result.close.clean


def test_server_close_flushes_and_ends_while_stdin_stays_open() -> None:
    channel = MemoryChannel()
    sink = MemorySink()
    source = MemorySource(end=False)
    pump = Pump(source, sink, channel)
    pump.start()
    channel.peer_send(b"SSH-2.0-server\r\n")
    channel.peer_close(1001)
    assert pump.wait(5)
    assert bytes(sink.data) == b"SSH-2.0-server\r\n"
    assert sink.closed
    assert not pump.result.source_ended
    assert close_error(pump.result.close, TARGET) is None
    # The upstream thread is still blocked on the source; a later chunk is dropped
    # because the channel is closed, and the thread ends.
    source.feed(b"too late")
    source.end()
    assert pump.join(5)


def test_large_payload_both_directions_is_byte_exact() -> None:
    channel = MemoryChannel()
    server = echo_server(channel)
    chunks = [os.urandom(1 << 20) for _ in range(32)]
    sink = MemorySink()
    result = Pump(MemorySource(chunks), sink, channel).run()
    server.join(5)
    assert result.bytes_up == result.bytes_down == 32 << 20
    assert hashlib.sha256(sink.data).digest() == hashlib.sha256(b"".join(chunks)).digest()


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (1013, "refused the connection"),
        (1011, "could not connect to the sshd"),
        (None, "connection to the server was lost"),
        (4000, "closed the tunnel with code 4000"),
    ],
)
def test_abnormal_close_codes_are_errors(code: int | None, fragment: str) -> None:
    channel = MemoryChannel()
    sink = MemorySink()
    pump = Pump(MemorySource(end=False), sink, channel)
    pump.start()
    channel.peer_send(b"partial")
    channel.peer_close(code)
    assert pump.wait(5)
    error = close_error(pump.result.close, TARGET)
    assert isinstance(error, RelayError)
    assert fragment in error.message
    assert "demo-session" in error.message or code in (None, 4000)
    assert bytes(sink.data) == b"partial"


@pytest.mark.parametrize(("code", "why"), [(1011, "an internal error"), (1013, "try again later")])
def test_a_close_after_data_says_the_tunnel_broke(code: int, why: str) -> None:
    at_connect = close_error(CloseInfo(code), TARGET)
    mid_stream = close_error(CloseInfo(code), TARGET, mid_stream=True)
    assert at_connect is not None and mid_stream is not None
    assert "broke" not in at_connect.message
    assert mid_stream.message == (
        "the tunnel to the sshd of session 'demo-session' broke: "
        f"the server closed it with {why} (close code {code})"
    )
    # Other endings read the same whenever they happen.
    for info in (CloseInfo(None, "no close frame"), CloseInfo(4000)):
        plain, late = close_error(info, TARGET), close_error(info, TARGET, mid_stream=True)
        assert plain is not None and late is not None and plain.message == late.message


def test_normal_close_codes_are_clean() -> None:
    for code in (1000, 1001):
        assert close_error(CloseInfo(code), TARGET) is None
    # Whatever the code, a close we started is clean.
    assert close_error(CloseInfo(1011, initiated_by_us=True), TARGET) is None


def test_sink_failure_aborts_the_channel() -> None:
    channel = MemoryChannel()
    sink = MemorySink(fail_after=5)
    pump = Pump(MemorySource(end=False), sink, channel)
    pump.start()
    channel.peer_send(b"1234")
    channel.peer_send(b"5678")
    assert pump.wait(5)
    assert isinstance(pump.result.sink_error, BrokenPipeError)
    assert channel.aborted
    assert bytes(sink.data) == b"1234"


def test_stop_aborts_and_finishes() -> None:
    channel = MemoryChannel()
    pump = Pump(MemorySource(end=False), MemorySink(), channel)
    pump.start()
    assert not pump.wait(0.05)
    pump.stop()
    assert pump.wait(5)
    assert pump.result.stopped
    assert channel.aborted


def test_source_error_counts_as_its_end() -> None:
    class Broken:
        def read(self) -> bytes:
            raise OSError(5, "Input/output error")

    channel = MemoryChannel()
    server = echo_server(channel)
    result = Pump(Broken(), MemorySink(), channel).run()
    server.join(5)
    assert result.source_ended
    assert isinstance(result.source_error, OSError)
    assert channel.close_sent == 1000
