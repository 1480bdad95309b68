"""The restart rule shared by the depth node and the labeller's replay."""
from depth_ms.core.stream_breaks import StreamBreaks


def test_restarts_on_another_sequence_a_time_jump_back_or_another_size():
    breaks = StreamBreaks(tolerance=0.5)
    assert breaks.reason("a", 10.0, (320, 240)) is None  # the first frame
    assert breaks.reason("a", 9.7, (320, 240)) is None  # back by less than the tolerance
    assert breaks.reason("a", 8.0, (320, 240)) == "time jumped backwards by 1.700 s (bag loop?)"
    assert breaks.reason("a", 8.1, (640, 480)) == "image size changed 320x240 -> 640x480"
    assert breaks.reason("b", 8.2, (640, 480)) == "another sequence (a -> b)"
    assert not breaks.restarts("b", 100.0, (640, 480))  # forward gaps are the estimator's business
