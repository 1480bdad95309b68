"""Stamp pairing: tolerance, unmatched and unused counts, brackets, bounded waiting."""
from depth_ms.evaluation.pairing import BRACKET, NEAREST, StampPairer


def _run(pairer, messages):
    matches = []
    for stream, stamp, payload in messages:
        matches += pairer.push(stream, stamp, payload)
    return matches + pairer.finish()


def test_nearest_within_tolerance_and_counts():
    pairer = StampPairer("ref", {"gt": NEAREST}, tolerance=0.01)
    messages = [("ref", 0.0, "r0"), ("gt", 0.004, "g0"),  # pairs
                ("ref", 0.1, "r1"), ("gt", 0.13, "g1"),  # 30 ms off: unmatched, g1 unused
                ("gt", 0.2, "g2"), ("ref", 0.2, "r2"),  # partner first, then reference
                ("gt", 0.3, "g3")]  # never asked for
    matches = _run(pairer, messages)
    assert [(m.reference, m.nearest["gt"]) for m in matches] == [("r0", "g0"), ("r1", None), ("r2", "g2")]
    assert pairer.counts.references == 3
    assert pairer.counts.unmatched == {"gt": 1}
    assert pairer.counts.unused == {"gt": 2}


def test_nearest_picks_the_closest_candidate():
    pairer = StampPairer("ref", {"gt": NEAREST}, tolerance=0.05)
    matches = _run(pairer, [("gt", 0.96, "far"), ("gt", 0.99, "near"), ("ref", 1.0, "r"), ("gt", 1.2, "late")])
    assert matches[0].nearest["gt"] == "near"


def test_bracket_returns_both_neighbours():
    pairer = StampPairer("ref", {"pose": BRACKET}, tolerance=0.01, bracket_tolerance=0.1)
    matches = _run(pairer, [("pose", 0.9, "p0"), ("pose", 1.05, "p1"), ("ref", 1.0, "r"), ("pose", 1.2, "p2"),
                            ("ref", 1.2, "exact"), ("ref", 2.0, "none")])
    assert matches[0].bracket["pose"] == ((0.9, "p0"), (1.05, "p1"))
    assert matches[1].bracket["pose"] == ((1.2, "p2"), (1.2, "p2"))
    assert matches[2].bracket["pose"] == (None, None)
    assert pairer.counts.unmatched == {"pose": 1} and pairer.counts.unused == {}


def test_resolves_in_order_once_partners_are_past_the_window():
    pairer = StampPairer("ref", {"gt": NEAREST}, tolerance=0.01, max_lag=10.0)
    assert pairer.push("ref", 1.0, "r") == []
    assert pairer.push("gt", 1.0, "g") == []  # a later GT could still be closer
    resolved = pairer.push("gt", 1.1, "g_next")
    assert [(m.reference, m.nearest["gt"]) for m in resolved] == [("r", "g")]


def test_a_silent_stream_does_not_hold_the_whole_stream():
    pairer = StampPairer("ref", {"gt": NEAREST}, tolerance=0.01, max_lag=0.5)
    held = []
    for i in range(20):
        held.append(len(pairer.push("ref", i * 0.1, i)))
    assert sum(held) >= 14  # everything older than max_lag is resolved as it goes
    assert len(pairer.finish()) == 20 - sum(held)
    assert pairer.counts.unmatched == {"gt": 20}
