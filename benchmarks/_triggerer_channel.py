"""A stand-in for a triggerer runner's channel to its supervisor, for running triggers outside Airflow.

In a triggerer, a trigger's XCom calls and secret masking are requests on ``SUPERVISOR_COMMS``,
the runner's channel to its supervisor process, which answers them through the Execution API.
That channel only exists inside a triggerer; :class:`TriggererChannel` answers the same requests
in memory (XCom rows keyed like the metadata DB's; ``MaskSecret`` acknowledged) so that the
triggers' real code runs unchanged: Airflow's own ``XCom.get_one`` / ``aget_one`` / ``set`` /
``aset``, serialisation included, and the provider's choice between them.

It behaves as Airflow 3.3's ``TriggerCommsDecoder``: ``asend`` lets many requests wait at once,
each on its own answer; ``send`` from another thread (``asgiref``'s) runs ``asend`` on the loop and
blocks that thread until the answer, and from the loop's own thread goes through the calling
trigger's greenback portal. ``round_trip`` seconds delay every answer (a supervisor in another
process; 0: at once). ``in_flight_peak`` is the most requests that were waiting at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any


class TriggererChannel:
    """``SUPERVISOR_COMMS`` for triggers run outside a triggerer (module docstring)."""

    def __init__(self, round_trip: float = 0.0) -> None:
        self.round_trip = round_trip
        self.rows: dict[tuple[Any, ...], Any] = {}
        #: (message type, XCom key, run id) of every request, in the order answered.
        self.log: list[tuple[str, str | None, str | None]] = []
        self.in_flight = 0
        self.in_flight_peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @staticmethod
    def _row(msg: Any) -> tuple[Any, ...]:
        return (msg.key, msg.dag_id, msg.task_id, msg.run_id, -1 if msg.map_index is None else msg.map_index)

    def _answer(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import GetXCom, MaskSecret, SetXCom, XComResult

        self.log.append((type(msg).__name__, getattr(msg, "key", None), getattr(msg, "run_id", None)))
        if isinstance(msg, GetXCom):
            return XComResult(key=msg.key, value=self.rows.get(self._row(msg)))
        if isinstance(msg, SetXCom):
            self.rows[self._row(msg)] = msg.value
            return None
        if isinstance(msg, MaskSecret):
            return None
        raise ValueError(f"the stand-in triggerer channel does not answer {type(msg).__name__}")

    async def asend(self, msg: Any) -> Any:
        if self._loop is None:
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            if self.round_trip:
                await asyncio.sleep(self.round_trip)
            return self._answer(msg)
        finally:
            self.in_flight -= 1

    def send(self, msg: Any) -> Any:
        loop = self._loop
        if loop is None or not loop.is_running():  # before the triggers' loop runs (seeding rows)
            return self._answer(msg)
        if threading.get_ident() == self._loop_thread:
            import greenback

            return greenback.await_(self.asend(msg))
        return asyncio.run_coroutine_threadsafe(self.asend(msg), loop).result()

    def bind(self) -> None:
        """Bind to the running event loop (the one the triggers run in)."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()

    def seed(self, key: str, value: Any, ident: Mapping[str, Any]) -> None:
        """Store an XCom as the task would have before deferring (the operator's "deferred" marker)."""
        from airflow.providers.common.compat.sdk import XCom

        XCom.set(key=key, value=value, **ident)


@contextlib.contextmanager
def installed(channel: TriggererChannel) -> Iterator[TriggererChannel]:
    """Make ``channel`` this process's ``SUPERVISOR_COMMS`` (restoring what was there after)."""
    from airflow.sdk.execution_time import task_runner

    missing = object()
    before = getattr(task_runner, "SUPERVISOR_COMMS", missing)
    task_runner.SUPERVISOR_COMMS = channel  # type: ignore[assignment]
    try:
        yield channel
    finally:
        if before is missing:
            del task_runner.SUPERVISOR_COMMS
        else:
            task_runner.SUPERVISOR_COMMS = before  # type: ignore[assignment]
