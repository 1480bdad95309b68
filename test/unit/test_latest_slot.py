import threading
import time

from depth_ms.core.latest_slot import LatestOnlySlot


def test_keeps_only_newest_and_counts_drops():
    slot = LatestOnlySlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0.01) is None
    assert (slot.put_count, slot.dropped_count) == (3, 2)


def test_slow_consumer_sees_fresh_items_and_close_releases():
    slot = LatestOnlySlot()
    seen = []

    def consume():
        while True:
            item = slot.take(timeout=1.0)
            if item is None:
                return
            seen.append(item)
            time.sleep(0.01)  # slow worker

    worker = threading.Thread(target=consume)
    worker.start()
    for i in range(200):
        slot.put(i)
        time.sleep(0.0005)
    time.sleep(0.05)
    slot.close()
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert seen == sorted(seen) and seen[-1] == 199
    assert len(seen) + slot.dropped_count == 200
    assert slot.dropped_count > 100


def test_merge_combines_a_dropped_item_into_the_newer_one():
    slot = LatestOnlySlot()
    slot.put((1, 0.1), merge=lambda old, new: (new[0], max(old[1], new[1])))
    slot.put((2, 0.5), merge=lambda old, new: (new[0], max(old[1], new[1])))
    slot.put((3, 0.2), merge=lambda old, new: (new[0], max(old[1], new[1])))
    assert slot.take(timeout=0) == (3, 0.5)  # the largest step among the dropped ones survives
    slot.put((4, 0.1), merge=lambda old, new: (0, 0.0))
    assert slot.take(timeout=0) == (4, 0.1)  # nothing dropped: stored as given
