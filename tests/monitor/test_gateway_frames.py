"""The frame watch beside ib_async: when a frame of the gateway's stream began, whether it is
stuck, and a length prefix no IB message can have. Fed real frames of the simulator's protocol,
split at every byte boundary, on a monotonic clock the test moves."""

from __future__ import annotations

import pytest

from monitor.gateway import MAX_FRAME, FrameWatch
from monitor.sim import protocol as P


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frames() -> bytes:
    """Three real messages back to back, as the gateway would send them."""
    return b"".join(
        P.frame(P.account_value("NetLiquidation", f"{value}.00", "USD", "DU1"))
        for value in (1, 22, 333)
    )


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5, 7, 64])
def test_complete_frames_leave_nothing_pending_however_the_stream_is_cut(split):
    """Whole messages, delivered in chunks of any size: between frames nothing is pending."""
    ticks = Ticks()
    watch = FrameWatch(ticks)
    data = frames()
    for start in range(0, len(data), split):
        watch.feed(data[start : start + split])
        ticks.now += 1.0
    assert watch.stalled_for() == 0.0
    assert watch.problem(timeout=5.0) is None


def test_a_frame_cut_short_is_stuck_once_the_deadline_passes():
    """Half a frame arrives at t=100 and nothing more: pending since then, a problem only
    after 5 s; the rest arriving clears it."""
    ticks = Ticks()
    watch = FrameWatch(ticks)
    data = P.frame(P.account_value("NetLiquidation", "1.00", "USD", "DU1"))
    watch.feed(data[: len(data) // 2])
    ticks.now = 104.9
    assert watch.stalled_for() == pytest.approx(4.9)
    assert watch.problem(timeout=5.0) is None
    ticks.now = 105.5
    assert "incomplete for 5.5 s" in (watch.problem(timeout=5.0) or "")
    watch.feed(data[len(data) // 2 :])
    assert watch.problem(timeout=5.0) is None


def test_the_deadline_runs_from_the_start_of_the_frame_being_read():
    """A stream that keeps completing frames is never stuck, even when every chunk ends in
    the middle of the next frame."""
    ticks = Ticks()
    watch = FrameWatch(ticks)
    data = frames() * 20
    for start in range(0, len(data), 37):  # 37 never lines up with a frame boundary here
        watch.feed(data[start : start + 37])
        ticks.now += 3.0
        assert watch.problem(timeout=5.0) is None


def test_a_length_prefix_beyond_any_ib_message_is_flagged_at_once():
    """2**31-1 bytes announced: flagged as soon as the 4 bytes of the prefix are in; the
    largest message IB's own client accepts (16 MB - 1) is not."""
    watch = FrameWatch(Ticks())
    watch.feed(MAX_FRAME.to_bytes(4, "big"))
    assert watch.oversized is None
    watch.reset()
    watch.feed((2**31 - 1).to_bytes(4, "big")[:3])
    assert watch.oversized is None
    watch.feed(b"\xff")
    assert watch.oversized == 2**31 - 1
    assert "announced 2147483647 bytes" in (watch.problem(timeout=5.0) or "")


def test_an_empty_frame_is_complete():
    """A zero-length prefix is a whole (empty) message."""
    watch = FrameWatch(Ticks())
    watch.feed((0).to_bytes(4, "big"))
    assert watch.stalled_for() == 0.0 and watch.oversized is None
