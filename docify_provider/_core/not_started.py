"""A single run request turned away (429, not started): wait, send again, within bounds (no Airflow).

Why: a service at its cap of runs at once (Dify's ``APP_MAX_ACTIVE_REQUESTS``, a gateway's rate
limit) answers a run request 429 before starting anything (``RunNotStartedError``). That is the one
failure after which the same request may be sent again without paying twice, so a single-run
operator (on the worker) and its trigger (in the triggerer) wait and send again instead of failing
the document. The wait is the batch limiter's rule (``admission.turn_away_delay``: the server's
``Retry-After``, capped, else equal-jitter backoff); how long in all is bounded by the operator's
``max_wait_not_started`` and by the task's ``execution_timeout`` (a wait that would pass either is
not begun: the last ``RunNotStartedError`` is raised, saying how long it waited and what to do).

``NotStartedWaits`` decides; ``send_until_started`` (worker) and ``asend_until_started``
(triggerer) are the same loop around it, one with ``time.sleep`` and one with ``asyncio.sleep``.
Each caller says what must happen once a 429 arrives (``before_wait``, also when the bound is reached
and no wait follows): the worker forgets the ledger's pending record, the trigger sets its restart
marker back to "not sent" (``"deferred"``). With ``max_wait_not_started`` 0 nothing changes: the
error is raised as it was.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from docify_provider._core.admission import turn_away_delay
from docify_provider._core.errors import RunNotStartedError
from docify_provider._core.wording import turned_away_for_good, turned_away_line

T = TypeVar("T")

#: The operator parameter, named in its errors.
PARAM = "max_wait_not_started"


def check_max_wait(value: Any) -> float:
    """``value`` as seconds, or ``ValueError`` naming the parameter (called when the DAG is parsed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(
            f"{PARAM} must be a number of seconds >= 0 (0: fail at once when the server turns the run away "
            f"with 429), got {value!r}"
        )
    if value == float("inf"):
        raise ValueError(f"{PARAM} must be a finite number of seconds (the task's execution_timeout bounds it too)")
    return float(value)


@dataclasses.dataclass
class NotStartedWaits:
    """The waits of one run request that the server turns away (module docstring).

    :param max_wait: seconds of waiting in all, from the first turn-away (``max_wait_not_started``).
    :param deadline: wall-clock time (``time.time()``) never to wait past: the task's ``execution_timeout``.
    :param label: the service, in the final error.
    :param batch_operator: this backend's batch operator, named in the final error.
    :param initial: first backoff ceiling (the connection's ``backoff_initial``).
    :param maximum: largest backoff ceiling (``backoff_max``).
    :param cap: longest ``Retry-After`` honoured (``retry_after_cap``).
    """

    max_wait: float
    deadline: float | None = None
    label: str = "The service"
    batch_operator: str | None = None
    initial: float = 1.0
    maximum: float = 30.0
    cap: float = 120.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    #: Run requests turned away so far.
    turned_away: int = dataclasses.field(default=0, init=False)
    _first_at: float | None = dataclasses.field(default=None, init=False)

    @property
    def waited(self) -> float:
        """Seconds since the first turn-away."""
        return 0.0 if self._first_at is None else max(0.0, self.clock() - self._first_at)

    def next_wait(self, exc: RunNotStartedError) -> float:
        """Seconds to wait before sending again after ``exc``; raises when no wait may begin.

        ``max_wait`` 0 re-raises ``exc`` itself (the behaviour before this setting). Otherwise a wait
        that would end past ``max_wait`` or ``deadline`` raises ``exc``'s class with a message
        saying how long it waited, how often it was turned away and what to do.
        """
        if self.max_wait <= 0:
            raise exc
        if self._first_at is None:
            self._first_at = self.clock()
        self.turned_away += 1
        delay = turn_away_delay(
            exc.retry_after,
            self.turned_away - 1,
            initial=self.initial,
            maximum=self.maximum,
            cap=self.cap,
            rand=self.rand,
        )
        waited = self.waited
        if waited + delay > self.max_wait:
            raise self._gave_up(exc, delay, f"{PARAM}={self.max_wait:g}s") from exc
        if self.deadline is not None and self.wall() + delay >= self.deadline:
            raise self._gave_up(exc, delay, "the task's execution_timeout") from exc
        return delay

    def line(self, delay: float) -> str:
        """The INFO line for a wait of ``delay`` before the next attempt."""
        return turned_away_line(delay, self.turned_away + 1, self.waited, self.max_wait)

    def _gave_up(self, exc: RunNotStartedError, delay: float, bound: str) -> RunNotStartedError:
        """``exc`` (same class, status, ``Retry-After``) with the message that ends the waits."""
        final = copy.copy(exc)
        final.message = turned_away_for_good(
            self.label, self.turned_away, self.waited, delay, bound, self.batch_operator, exc.message
        )
        final.args = (final._render(),)
        return final


def send_until_started(
    send: Callable[[], T],
    waits: NotStartedWaits,
    *,
    before_wait: Callable[[], None],
    log: logging.Logger | Any,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``send()``, sent again after each ``RunNotStartedError`` while ``waits`` allows (on the worker).

    Every other outcome, success or failure, ends it at once.
    """
    while True:
        try:
            return send()
        except RunNotStartedError as exc:
            if waits.max_wait <= 0:
                raise  # as without the setting: the caller fails
            before_wait()  # nothing is pending now, whether a wait follows or the bound is reached
            delay = waits.next_wait(exc)
            log.info("%s", waits.line(delay))
            sleep(delay)


async def asend_until_started(
    send: Callable[[], Awaitable[T]],
    waits: NotStartedWaits,
    *,
    before_wait: Callable[[], Awaitable[None]],
    log: logging.Logger | Any,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``send_until_started`` for an event loop (the triggerer): the same loop, awaited."""
    while True:
        try:
            return await send()
        except RunNotStartedError as exc:
            if waits.max_wait <= 0:
                raise
            await before_wait()
            delay = waits.next_wait(exc)
            log.info("%s", waits.line(delay))
            await sleep(delay)


__all__ = [
    "NotStartedWaits",
    "asend_until_started",
    "check_max_wait",
    "send_until_started",
]
