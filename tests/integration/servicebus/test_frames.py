"""The broker's incoming-byte scrubber (pure: no broker needed): transfers after a session's first lose their id."""

from __future__ import annotations

from local.servicebus.frames import TransferIdScrubber

HEADER = b"AMQP\x00\x01\x00\x00"


def _frame(channel: int, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + b"\x02\x00" + channel.to_bytes(2, "big") + body


def _transfer(
    channel: int, delivery_id: bytes, payload: bytes = b"payload", wide: bool = False, more: bool | None = None
) -> bytes:
    fields = b"\x52\x01" + delivery_id + b"\xa0\x10" + b"t" * 16 + b"\x43"  # handle 1, id, tag, message-format 0
    count = 4
    if more is not None:
        fields += b"\x42" + (b"\x41" if more else b"\x42")  # settled false, more
        count = 6
    listed = (
        b"\xd0" + (len(fields) + 4).to_bytes(4, "big") + count.to_bytes(4, "big") + fields
        if wide
        else b"\xc0" + bytes([len(fields) + 1, count]) + fields
    )
    return _frame(channel, b"\x00\x53\x14" + listed + payload)


BEGIN = _frame(0, b"\x00\x53\x11\xc0\x04\x03\x40\x43\x43")  # begin [null, 0, 0]
FLOW = _frame(0, b"\x00\x53\x13\xc0\x03\x02\x43\x43")


def _feed_in_pieces(stream: bytes, piece: int) -> bytes:
    scrubber, out = TransferIdScrubber(), b""
    for at in range(0, len(stream), piece):
        out += bytes(scrubber.feed(memoryview(stream[at : at + piece])))
    return out


def test_the_first_transfer_of_a_session_keeps_its_id_and_later_ones_lose_it() -> None:
    stream = (
        HEADER + BEGIN + _transfer(0, b"\x52\x01") + FLOW + _transfer(0, b"\x52\x01") + _transfer(0, b"\x70\0\0\1\0")
    )
    expected = HEADER + BEGIN + _transfer(0, b"\x52\x01") + FLOW + _transfer(0, b"\x40") + _transfer(0, b"\x40")
    assert bytes(TransferIdScrubber().feed(stream)) == expected
    for piece in (1, 3, 7, 16, 50):
        assert _feed_in_pieces(stream, piece) == expected, piece


def test_list32_transfers_and_a_new_session_on_the_same_channel() -> None:
    stream = BEGIN + _transfer(0, b"\x43", wide=True) + _transfer(0, b"\x52\x02", wide=True) + BEGIN
    stream += _transfer(0, b"\x43") + _transfer(0, b"\x43")
    expected = BEGIN + _transfer(0, b"\x43", wide=True) + _transfer(0, b"\x40", wide=True) + BEGIN
    expected += _transfer(0, b"\x43") + _transfer(0, b"\x40")
    assert _feed_in_pieces(stream, 5) == expected


def test_every_frame_of_a_multi_frame_delivery_keeps_its_id() -> None:
    big = [
        _transfer(0, b"\x52\x03", more=True),
        _transfer(0, b"\x52\x03", more=True),
        _transfer(0, b"\x52\x03", more=False),
    ]
    stream = BEGIN + _transfer(0, b"\x52\x02") + b"".join(big) + _transfer(0, b"\x52\x04", more=False)
    expected = BEGIN + _transfer(0, b"\x52\x02") + b"".join(big) + _transfer(0, b"\x40", more=False)
    assert _feed_in_pieces(stream, 9) == expected


def test_a_stream_without_transfers_passes_through_untouched() -> None:
    stream = HEADER + BEGIN + FLOW * 20 + _frame(0, b"")
    view = memoryview(stream)
    assert TransferIdScrubber().feed(view) is view
    assert _feed_in_pieces(stream, 4) == stream


END = _frame(1, b"\x00\x53\x17\x45")  # end, no fields
DETACH = _frame(1, b"\x00\x53\x16\xc0\x04\x02\x52\x04\x42")  # detach [handle 4, closed false]
BEGIN_1 = _frame(1, b"\x00\x53\x11\xc0\x04\x03\x40\x43\x43")


def test_frames_after_the_clients_end_on_that_channel_are_dropped_until_it_begins_again() -> None:
    # The SDK's session receiver ends its session and then detaches its $management link there: Proton would close
    # the connection over that detach ("no such channel"), so it never reaches Proton.
    stream = HEADER + BEGIN + BEGIN_1 + END + DETACH + FLOW + _transfer(1, b"\x52\x07", b"x" * 300) + BEGIN_1 + DETACH
    expected = HEADER + BEGIN + BEGIN_1 + END + FLOW + BEGIN_1 + DETACH
    assert bytes(TransferIdScrubber().feed(stream)) == expected
    for piece in (1, 3, 7, 16, 50, 120):
        assert _feed_in_pieces(stream, piece) == expected, piece
