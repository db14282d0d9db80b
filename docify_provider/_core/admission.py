"""Admission control for many runs against one service: an AIMD concurrency limit (asyncio, no Airflow).

Why: a batch sends many run requests to a service that caps how many runs it takes at once (Dify's
``APP_MAX_ACTIVE_REQUESTS``, answered 429 ``too_many_requests``). The user's ``max_concurrency``
may be above that cap, and the cap may change while the batch runs. A 429 to a run request is the
one failure after which the same request may be sent again (``RunNotStartedError``: nothing
started, nothing billed), so the limiter can learn the cap by touching it:

* it starts at ``max_concurrency`` and never goes above it;
* a run turned away (``not_started``) cuts the limit by ``decrease`` (multiplicative decrease),
  once per burst: the 429s of requests admitted before the last cut are the same signal, not a
  new one (an *epoch* per cut). A 429 at (within one run of) the level of the previous cut says the
  cap is where it was: the cut is then ``gentle_decrease`` (0.9), so the limit saws between 0.9 and
  1.0 of a steady cap (about 97 % of it) instead of between 0.75 and 1.0 (about 88 %, measured with
  2,000 documents against a cap of 20 in ``benchmarks/bench_batch_throughput.py``); a 429 below it
  (the cap shrank, or is still being found) cuts by ``decrease``, so a far lower cap is found fast;
* each run that got in adds ``increase / limit`` (additive increase: +``increase`` per window of
  ``limit`` runs), so the limit creeps back up to the cap and probes it again;
* after a turn-away nothing is admitted until the server's ``Retry-After`` (capped at
  ``retry_after_cap``) has passed, or, without one, a capped exponential backoff with jitter;
  a run that ends frees a slot on the server, so it ends a backoff that the server did not ask for.

Being just over the cap costs a few 429 round trips (free); being under it costs throughput, so the
default cut is gentle (0.75, not TCP's 0.5). ``state()`` says where the limiter stands, for the
progress lines. The clock, the sleep and the jitter are injectable: the unit tests run without
sockets or real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from docify_provider._core.errors import RunNotStartedError

T = TypeVar("T")


def backoff_delay(streak: int, *, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after ``streak`` earlier turn-aways in a row: capped exponential, "equal jitter".

    The ceiling doubles from ``initial`` up to ``maximum``; the wait is spread over its upper half, so
    it is never 0 and callers turned away together do not come back together.
    """
    ceiling = min(maximum, initial * 2**streak)
    return ceiling / 2 + rand() * ceiling / 2


def turn_away_delay(
    retry_after: float | None,
    streak: int,
    *,
    initial: float,
    maximum: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """How long to wait before sending a run request that was turned away (429, not started) again.

    The server's ``Retry-After`` when it sent one (capped at ``cap``: a misconfigured gateway must
    not park a task for hours), else ``backoff_delay``. One rule for the batch's limiter and the
    single-run operators and triggers (``NotStartedWaits``).
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), cap)
    return backoff_delay(streak, initial=initial, maximum=maximum, rand=rand)


@dataclasses.dataclass(frozen=True)
class AdmissionState:
    """A snapshot of the limiter for a progress line.

    :param limit: runs admitted at once now (whole runs; at least ``min_concurrency``).
    :param max_concurrency: the ceiling the user set.
    :param in_flight: runs admitted and not yet released.
    :param waiting: callers waiting for a slot.
    :param paused_for: seconds until admissions resume after a turn-away (0: not paused).
    :param not_started: run requests turned away so far (429 "not started").
    :param last_not_started_ago: seconds since the last turn-away (None: none yet).
    :param last_retry_after: the last turn-away's ``Retry-After`` in seconds, if the server sent one.
    """

    limit: int
    max_concurrency: int
    in_flight: int
    waiting: int
    paused_for: float
    not_started: int
    last_not_started_ago: float | None
    last_retry_after: float | None

    def describe(self) -> str:
        """``limit 16/20, 16 in flight, 4 waiting, last 429 3s ago (Retry-After 2s)`` for a log line."""
        text = f"limit {self.limit}/{self.max_concurrency}, {self.in_flight} in flight, {self.waiting} waiting"
        if self.last_not_started_ago is not None:
            text += f", {self.not_started} turned away (429), last {self.last_not_started_ago:.0f}s ago"
            if self.last_retry_after is not None:
                text += f" (Retry-After {self.last_retry_after:g}s)"
        if self.paused_for > 0:
            text += f", paused {self.paused_for:.1f}s"
        return text


@dataclasses.dataclass
class Ticket:
    """One admitted run; give it back with ``release`` (or use ``AdmissionLimiter.slot``)."""

    epoch: int
    released: bool = False


class AdmissionLimiter:
    """Admit at most ``limit`` runs at once, learning the service's cap from its 429s (module docstring)."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        min_concurrency: int = 1,
        decrease: float = 0.75,
        gentle_decrease: float = 0.9,
        increase: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if not 0 < decrease < 1 or not 0 < gentle_decrease < 1:
            raise ValueError(f"decrease and gentle_decrease must be between 0 and 1, got {decrease}, {gentle_decrease}")
        self.max_concurrency = int(max_concurrency)
        self.min_concurrency = max(1, min(int(min_concurrency), self.max_concurrency))
        self.decrease = decrease
        self.gentle_decrease = gentle_decrease
        self._ceiling: float | None = None  # the limit at the last cut: where the cap was found
        self.increase = increase
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.retry_after_cap = retry_after_cap
        self._clock = clock
        self._rand = rand
        self._limit = float(self.max_concurrency)
        self._in_flight = 0
        self._waiting = 0
        self._epoch = 0
        self._streak = 0  # turn-aways since the last run that got in
        self._resume_at = 0.0
        self._server_asked = False  # the current pause is the server's Retry-After
        self._not_started = 0
        self._last_at: float | None = None
        self._last_retry_after: float | None = None
        self._changed = asyncio.Condition()

    # -- what the limiter says -----------------------------------------------------------------

    @property
    def limit(self) -> int:
        return max(self.min_concurrency, min(self.max_concurrency, math.floor(self._limit)))

    def state(self) -> AdmissionState:
        now = self._clock()
        return AdmissionState(
            limit=self.limit,
            max_concurrency=self.max_concurrency,
            in_flight=self._in_flight,
            waiting=self._waiting,
            paused_for=max(0.0, self._resume_at - now),
            not_started=self._not_started,
            last_not_started_ago=None if self._last_at is None else max(0.0, now - self._last_at),
            last_retry_after=self._last_retry_after,
        )

    # -- admission -------------------------------------------------------------------------------

    async def acquire(self) -> Ticket:
        """Wait until a run may be sent: under the limit and past any pause."""
        self._waiting += 1
        try:
            async with self._changed:
                while True:
                    pause = self._resume_at - self._clock()
                    if pause <= 0 and self._in_flight < self.limit:
                        break
                    timeout = pause if pause > 0 else None
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout)
                self._in_flight += 1
                return Ticket(self._epoch)
        finally:
            self._waiting -= 1

    async def release(self, ticket: Ticket, *, not_started: bool = False, retry_after: float | None = None) -> float:
        """Give the slot back: the run ended (or failed), or it was turned away (``not_started``).

        Returns how long admissions now pause (0 unless turned away).
        """
        if ticket.released:
            return 0.0
        ticket.released = True
        async with self._changed:
            self._in_flight -= 1
            delay = self._turned_away(ticket, retry_after) if not_started else self._got_in()
            self._changed.notify_all()
        return delay

    def _got_in(self) -> float:
        self._streak = 0
        self._limit = min(float(self.max_concurrency), self._limit + self.increase / max(self._limit, 1.0))
        if not self._server_asked:
            self._resume_at = 0.0  # a run ended: a slot is free on the server too
        return 0.0

    def _turned_away(self, ticket: Ticket, retry_after: float | None) -> float:
        now = self._clock()
        self._not_started += 1
        self._last_at = now
        self._last_retry_after = retry_after
        if ticket.epoch == self._epoch:  # the first 429 of a burst: one cut per burst
            steady = self._ceiling is not None and self._limit >= self._ceiling - 1
            self._ceiling = self._limit
            factor = self.gentle_decrease if steady else self.decrease
            self._limit = max(float(self.min_concurrency), self._limit * factor)
            self._epoch += 1
        delay = turn_away_delay(
            retry_after,
            self._streak,
            initial=self.backoff_initial,
            maximum=self.backoff_max,
            cap=self.retry_after_cap,
            rand=self._rand,
        )
        self._server_asked = retry_after is not None
        self._streak += 1
        self._resume_at = max(self._resume_at, now + delay)
        return delay

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """``async with limiter.slot():`` one run; the slot is released as "got in" on exit.

        Raise ``RunNotStartedError`` inside to release it as turned away instead.
        """
        ticket = await self.acquire()
        try:
            yield ticket
        except RunNotStartedError as exc:
            await self.release(ticket, not_started=True, retry_after=exc.retry_after)
            raise
        finally:
            await self.release(ticket)

    async def call(self, send: Callable[[], Awaitable[T]], *, max_turn_aways: int | None = None) -> T:
        """``await send()`` in a slot, sent again each time it is turned away (429, not started).

        Every other outcome, success or failure, ends it. ``max_turn_aways`` bounds the resends
        (None: until the caller cancels); past it the last ``RunNotStartedError`` is raised.
        """
        turned_away = 0
        while True:
            try:
                async with self.slot():
                    return await send()
            except RunNotStartedError:
                turned_away += 1
                if max_turn_aways is not None and turned_away > max_turn_aways:
                    raise


__all__ = ["AdmissionLimiter", "AdmissionState", "Ticket"]
