"""Calling back into the event loop from the writer thread without ever blocking it.

anyio's ``from_thread.run_sync`` waits for the loop to run the call, which would tie
the writer's speed to the loop's responsiveness. The writer only needs
fire-and-forget wake-ups (set an event), so this uses each loop's own thread-safe
scheduling call: ``loop.call_soon_threadsafe`` on asyncio, ``TrioToken.run_sync_soon``
on trio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ("LoopWaker",)


class LoopWaker:
    """Captures the running event loop; :meth:`call` schedules a function on it from
    any thread. Calls made after the loop has closed are silently ignored."""

    __slots__ = ("_schedule",)

    def __init__(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # anyio's other backend

            self._schedule: Callable[[Callable[[], object]], object] = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._schedule = loop.call_soon_threadsafe

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the loop thread soon; never blocks, never raises."""
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is left to wake
            self._schedule(fn)
