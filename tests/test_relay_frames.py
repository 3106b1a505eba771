"""RFC 6455 framing of the relay's data path, checked against the `websockets` library."""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.utils import apply_mask as reference_mask

from sshkit.relay.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FrameError,
    FrameParser,
    apply_mask,
    close_payload,
    encode_frame,
    parse_close,
)


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server-to-client frame, serialized by the library (the independent oracle)."""
    return Frame(Opcode(opcode), payload, fin).serialize(mask=False)


def parse_client_frame(data: bytes) -> Frame:
    """Parse one client frame as a server would (the library unmasks it)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert reader.at_eof() is not False
        return frame
    raise AssertionError("incomplete frame")


def feed_split(parser: FrameParser, data: bytes, cuts: list[int]) -> list[object]:
    """Feed `data` cut at `cuts`; payload views are copied out before the next feed."""
    out: list[object] = []
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(edges):
        for event in parser.feed(memoryview(bytearray(data[start:end]))):
            out.append(event if isinstance(event, Control) else bytes(event))
    return out


# --- client frames -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_client_frames_parse_back_with_the_library(size: int) -> None:
    payload = os.urandom(size)
    header, body = encode_frame(OP_BINARY, payload, b"\x01\x02\x03\x04")
    frame = parse_client_frame(header + body)
    assert frame.opcode is Opcode.BINARY
    assert frame.fin
    assert frame.data == payload


def test_client_frames_are_masked_with_the_given_key() -> None:
    header, body = encode_frame(OP_BINARY, b"\x00" * 8, b"\xaa\xbb\xcc\xdd")
    assert header == b"\x82\x88\xaa\xbb\xcc\xdd"
    assert body == b"\xaa\xbb\xcc\xdd" * 2


@given(st.binary(max_size=600), st.binary(min_size=4, max_size=4))
def test_the_c_mask_matches_the_reference(data: bytes, key: bytes) -> None:
    assert apply_mask(data, key) == reference_mask(data, key)
    assert apply_mask(memoryview(data), key) == reference_mask(data, key)


def test_control_frames_are_limited_and_keys_have_four_bytes() -> None:
    with pytest.raises(ValueError):
        encode_frame(OP_PING, b"x" * 126, b"1234")
    with pytest.raises(ValueError):
        encode_frame(OP_BINARY, b"x", b"123")


def test_close_payload_round_trip_and_reason_cut_to_fit() -> None:
    assert parse_close(close_payload(1000)) == (1000, "")
    assert parse_close(close_payload(1013, "later")) == (1013, "later")
    long = close_payload(1001, "é" * 100)
    assert len(long) <= 125
    code, reason = parse_close(long)
    assert code == 1001 and set(reason) == {"é"}
    assert parse_close(b"") == (None, "")
    with pytest.raises(FrameError):
        parse_close(b"\x03")
    with pytest.raises(FrameError):
        parse_close(struct.pack("!H", 1000) + b"\xff")


# --- server frames -----------------------------------------------------------------------

frame_specs = st.lists(
    st.one_of(
        st.tuples(st.just("binary"), st.lists(st.binary(max_size=300), min_size=1, max_size=3)),
        st.tuples(st.just("text"), st.lists(st.text(max_size=50), min_size=1, max_size=3)),
        st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125)),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(frame_specs, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_frames_cut_anywhere_parse_to_the_same_stream(specs, cuts) -> None:  # type: ignore[no-untyped-def]
    wire = bytearray()
    expected_data = bytearray()
    expected_controls: list[Control] = []
    texts = 0
    for kind, body in specs:
        if kind in ("ping", "pong"):
            opcode = OP_PING if kind == "ping" else OP_PONG
            wire += server_frame(opcode, body)
            expected_controls.append(Control(opcode, body))
            continue
        first = OP_BINARY if kind == "binary" else OP_TEXT
        for i, part in enumerate(body):
            raw = part if isinstance(part, bytes) else part.encode()
            opcode = first if i == 0 else OP_CONTINUATION
            wire += server_frame(opcode, raw, fin=i == len(body) - 1)
            if kind == "binary":
                expected_data += raw
        texts += kind == "text"
    parser = FrameParser()
    events = feed_split(parser, bytes(wire), cuts)
    data = b"".join(e for e in events if isinstance(e, bytes))
    controls = [e for e in events if isinstance(e, Control)]
    assert data == expected_data
    assert controls == expected_controls
    assert parser.text_messages == texts


def test_payload_views_point_into_the_fed_buffer() -> None:
    wire = bytearray(server_frame(OP_BINARY, b"x" * 1000))
    events = FrameParser().feed(memoryview(wire))
    assert len(events) == 1 and isinstance(events[0], memoryview)
    assert events[0].obj is wire  # no copy of the payload


def test_a_big_frame_streams_before_it_is_complete() -> None:
    wire = server_frame(OP_BINARY, b"y" * 100_000)
    parser = FrameParser()
    first = parser.feed(wire[:50_000])
    header = 10  # 2 bytes, then a 64-bit length
    assert sum(len(e) for e in first if isinstance(e, memoryview)) == 50_000 - header
    rest = parser.feed(wire[50_000:])
    assert sum(len(e) for e in rest if isinstance(e, memoryview)) == 50_000 + header


def test_close_frame_and_empty_control_frames() -> None:
    wire = server_frame(OP_CLOSE, close_payload(1001)) + server_frame(OP_PING, b"")
    assert FrameParser().feed(wire) == [Control(OP_CLOSE, b"\x03\xe9"), Control(OP_PING, b"")]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (Frame(Opcode.BINARY, b"abc").serialize(mask=True), "masked"),
        (b"\xc2\x00", "reserved bits"),
        (b"\x83\x00", "unknown opcode"),
        (b"\x09\x00", "fragmented control"),
        (b"\x89\x7e\x00\x7e" + b"x" * 126, "over 125"),
        (b"\x80\x01x", "continuation frame outside"),
        (b"\x02\x01x\x82\x01y", "new message before"),
        (b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", r"2\*\*63"),
    ],
)
def test_broken_framing_is_a_frame_error(wire: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        FrameParser().feed(wire)
