"""The state a saver shares across threads, with its one lock.

Three kinds of thread meet in a saver (see ``docs/decisions/0006-ownership.md``):

* the event loop's thread, where the saver, its detectors and ``await push`` live;
* producer threads (``push_from_thread``, the sync facade, SDK callbacks);
* the writer thread, the only one that touches the file.

Each piece of shared state has one owner and one way across:

* a channel's queue and counters belong to the channel, under the channel's lock;
  the writer reads and updates them only through the channel's ``_writer_*`` methods;
* everything else the three share is here, in :class:`Control`, under its lock:
  the saver's state and failure, the closing request, the layout requests (new
  detectors and channels) and the flush requests. The writer learns of new work
  only by taking it from here, after its doorbell rang;
* the writer talks back to the loop only through :class:`~streamsave._waker.LoopWaker`
  (fire-and-forget calls), and to producers by releasing room in their channel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._errors import LayoutFrozenError, SaverClosedError, StreamSaveError
from ._log import LogBook

if TYPE_CHECKING:
    from ._channel import Channel
    from ._config import SaverConfig
    from ._events import Event
    from ._waker import LoopWaker

__all__ = ("Control", "LayoutItem", "State")

State = Literal["opening", "open", "closing", "closed", "failed"]
#: a declaration for the writer to create in the file: ("detector", Detector) or ("channel", Channel)
LayoutItem = tuple[str, Any]


class Control:
    """Shared state of one saver; every method is safe from any thread.

    :param config: the saver's options.
    :param waker: schedules calls on the event loop from other threads.
    :param publish: delivers an event to subscribers (from any thread, never waits).
    """

    def __init__(self, config: SaverConfig, waker: LoopWaker, publish: Callable[[Event], None]) -> None:
        self.config = config
        self.waker = waker
        self.publish = publish
        #: the thread of the event loop the saver was opened on
        self.loop_thread = threading.get_ident()
        #: the writer's doorbell: set when there is something for it to do
        self.doorbell = threading.Event()
        self._lock = threading.Lock()
        self._state: State = "opening"
        self._failure: BaseException | None = None
        self._closing = False
        self._abort_deadline: float | None = None
        self._frozen = False
        self._done = False
        self._layout: list[LayoutItem] = []
        self._channels: list[Channel] = []
        self._flush_waiters: list[anyio.Event] = []
        self._queue_bytes = 0
        #: log messages posted and not yet stored (its own lock; see ``streamsave._log``)
        self.log = LogBook()

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> State:
        return self._state

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def channels(self) -> tuple[Channel, ...]:
        with self._lock:
            return tuple(self._channels)

    def ring(self) -> None:
        """Wake the writer."""
        if not self.doorbell.is_set():
            self.doorbell.set()

    def refusal(self) -> StreamSaveError | BaseException:
        """The error a refused call raises: the writer's failure, or "closed"."""
        if self._failure is not None:
            return self._failure
        return SaverClosedError(f"the saver for {str(self.config.path)!r} is {self._state}; "
                                "no more frames are accepted")

    # ------------------------------------------------------------------ declaring (any thread)
    @contextmanager
    def declaring(self, what: str) -> Iterator[list[LayoutItem]]:
        """Hold the lock while a detector or channel is declared; yields the list to
        append the declaration to. Refuses once closing, failed, or (SWMR) frozen."""
        with self._lock:
            if self._closing or self._failure is not None or self._done:
                raise self.refusal()
            if self._frozen and self.config.swmr:
                raise LayoutFrozenError(
                    f"cannot add {what}: writing has started and {str(self.config.path)!r} is in SWMR mode, which "
                    "forbids new objects; add every detector and channel before the first push, or open with "
                    "swmr=False")
            yield self._layout

    def register_channel(self, channel: Channel, queue_bytes: int) -> None:
        """Called inside :meth:`declaring`: count the channel and its queue's bytes."""
        self._channels.append(channel)
        self._queue_bytes += queue_bytes

    @property
    def queue_bytes_left(self) -> int:
        """What the saver-wide ``memory_budget`` leaves for new queues (inside :meth:`declaring`)."""
        return self.config.memory_budget - self._queue_bytes

    def freeze(self) -> None:
        """The first frame was accepted: the layout is complete (SWMR may start)."""
        with self._lock:
            self._frozen = True
        self.ring()

    # ------------------------------------------------------------------ requests to the writer
    def request_flush(self) -> anyio.Event | None:
        """Ask the writer for a flush; returns the event set when it is done, or
        ``None`` if the writer has already finished (nothing left to flush)."""
        with self._lock:
            if self._done:
                return None
            event = anyio.Event()
            self._flush_waiters.append(event)
        self.ring()
        return event

    def begin_close(self, *, abort: bool) -> bool:
        """Refuse new frames on every channel, then ask the writer to close.

        Every channel is shut under its own lock before the writer can see the
        request, so a frame is either accepted before (and then written or counted)
        or refused. Returns ``False`` if closing had already begun.
        """
        with self._lock:
            if self._closing:
                return False
            self._closing = True
            if self._state == "open":
                self._state = "closing"
            channels = tuple(self._channels)
        for ch in channels:
            ch._shut(self.refusal)
        with self._lock:
            if abort:
                self._abort_deadline = time.monotonic() + self.config.close_timeout
        self.ring()
        return True

    # ------------------------------------------------------------------ the writer's side
    def take_layout(self) -> tuple[list[LayoutItem], bool]:
        """The declarations made since the last call, and whether the layout is frozen
        (taken together, so a frozen layout's last declarations are never missed)."""
        with self._lock:
            items, self._layout = self._layout, []
            return items, self._frozen

    def take_flush_waiters(self) -> list[anyio.Event]:
        with self._lock:
            waiters, self._flush_waiters = self._flush_waiters, []
            return waiters

    def closing(self) -> tuple[bool, bool]:
        """``(closing, aborting)``: a close was requested; an aborted close's
        ``close_timeout`` has run out (from then on nothing more is written)."""
        with self._lock:
            deadline = self._abort_deadline
            return self._closing, deadline is not None and time.monotonic() >= deadline

    def opened(self) -> None:
        with self._lock:
            if self._state == "opening":
                self._state = "open"

    def fail(self, exc: BaseException) -> None:
        """The writer failed: every later call raises ``exc``."""
        with self._lock:
            if self._failure is None:
                self._failure = exc
            self._state = "failed"
            channels = tuple(self._channels)
        for ch in channels:
            ch._shut(self.refusal)

    def finish(self) -> list[anyio.Event]:
        """The writer is done: later flush requests return at once. Returns the
        waiters still to be woken."""
        with self._lock:
            self._done = True
            if self._failure is None:
                self._state = "closed"
            waiters, self._flush_waiters = self._flush_waiters, []
            channels = tuple(self._channels)
        for ch in channels:
            ch._shut(self.refusal)
        return waiters
