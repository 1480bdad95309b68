"""A one-item mailbox between ROS callbacks and the inference thread."""
from __future__ import annotations

import threading
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T")


class LatestOnlySlot(Generic[T]):
    """Holds only the newest item; putting over an unread item drops it and counts the drop.

    Callbacks call :meth:`put` (never blocks); the worker calls :meth:`take` (blocks up to a
    timeout). Inference then always starts on the freshest frame and latency never builds up.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._has_item = False
        self._closed = False
        self.put_count = 0
        self.dropped_count = 0

    def put(self, item: T, merge: Optional[Callable[[T, T], T]] = None) -> bool:
        """Store ``item``; returns True when an unread older item was dropped.

        ``merge(dropped, item)`` builds what is stored instead of ``item`` when one is dropped (under the
        slot's lock, so the worker never takes a half-merged item).
        """
        with self._cond:
            dropped = self._has_item
            if dropped:
                self.dropped_count += 1
                if merge is not None:
                    item = merge(self._item, item)
            self._item, self._has_item = item, True
            self.put_count += 1
            self._cond.notify()
            return dropped

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """Newest unread item, or None on timeout or after :meth:`close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake and release a waiting :meth:`take`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
