"""The AIMD admission limiter (``_core/admission.py``) without sockets, then against the Dify emulator's cap.

The unit tests drive the limiter with fake run outcomes and small real delays; the emulator test
sends a burst of more runs than Dify's ``max_active_requests`` and checks that every one completes,
none fails, every 429 was "not started" and the limit settles near the cap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from docify_provider._core.admission import AdmissionLimiter
from docify_provider._core.errors import RunNotStartedError
from docify_provider.dify.client import AsyncDifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import DifyRunNotStartedError
from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from helpers import BACKENDS


def turned_away(retry_after: float | None = None) -> RunNotStartedError:
    return RunNotStartedError("full", status_code=429, endpoint="POST /run", retry_after=retry_after)


async def test_starts_at_max_and_never_admits_more() -> None:
    limiter = AdmissionLimiter(3)
    tickets = [await limiter.acquire() for _ in range(3)]
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert (limiter.state().in_flight, limiter.state().waiting, limiter.limit) == (3, 1, 3)
    await limiter.release(tickets[0])
    fourth = await asyncio.wait_for(waiter, 1)
    for ticket in [*tickets[1:], fourth]:
        await limiter.release(ticket)
    assert limiter.limit == 3, "successes never raise the limit above max_concurrency"


async def test_one_cut_per_burst_then_additive_increase() -> None:
    limiter = AdmissionLimiter(8, decrease=0.5, backoff_initial=0.001, backoff_max=0.002)
    burst = [await limiter.acquire() for _ in range(8)]
    for ticket in burst[:5]:  # five 429s of one burst: one cut, not five
        await limiter.release(ticket, not_started=True)
    assert limiter.limit == 4
    assert limiter.state().not_started == 5
    for ticket in burst[5:]:
        await limiter.release(ticket)
    # additive: +1 per window of `limit` runs that got in
    before = limiter._limit
    for _ in range(4):
        await limiter.release(await limiter.acquire())
    assert limiter._limit == pytest.approx(before + 1, rel=0.1)
    # a 429 of a request admitted after the cut is a new signal: cut again
    ticket = await limiter.acquire()
    await limiter.release(ticket, not_started=True)
    assert limiter.limit == 2


async def test_a_429_where_the_cap_was_found_before_cuts_gently() -> None:
    """The first 429 at 20 cuts to 15 (x0.75); back at 20, a 429 there again says the cap has not moved:
    the cut is x0.9 (18), so the limit saws close under a steady cap instead of a quarter below it."""
    limiter = AdmissionLimiter(20, backoff_initial=0.001, backoff_max=0.002)

    async def turn_away_one() -> int:
        """A full window, its first run turned away: the limit right after the cut."""
        burst = [await limiter.acquire() for _ in range(limiter.limit)]
        await limiter.release(burst[0], not_started=True)
        cut = limiter.limit
        for ticket in burst[1:]:  # the others got in
            await limiter.release(ticket)
        return cut

    assert await turn_away_one() == 15
    while limiter.limit < 20:  # runs that got in: +1 per window of `limit`
        await limiter.release(await limiter.acquire())
    assert await turn_away_one() == 18


async def test_never_below_min_concurrency() -> None:
    limiter = AdmissionLimiter(4, min_concurrency=2, decrease=0.1, backoff_initial=0.001, backoff_max=0.001)
    for _ in range(5):
        await limiter.release(await limiter.acquire(), not_started=True)
    assert limiter.limit == 2


async def test_retry_after_is_honoured_and_capped() -> None:
    limiter = AdmissionLimiter(2, retry_after_cap=0.2)
    delay = await limiter.release(await limiter.acquire(), not_started=True, retry_after=0.15)
    assert delay == pytest.approx(0.15)
    assert limiter.state().paused_for > 0.1
    assert "Retry-After 0.15s" in limiter.state().describe()
    started = time.monotonic()
    await limiter.release(await limiter.acquire())
    assert time.monotonic() - started >= 0.14, "nothing admitted before Retry-After"
    # a run ending does not shorten a wait the server asked for
    delay = await limiter.release(await limiter.acquire(), not_started=True, retry_after=5)
    assert delay == pytest.approx(0.2), "capped at retry_after_cap"


async def test_backoff_without_retry_after_is_exponential_with_jitter_and_capped() -> None:
    limiter = AdmissionLimiter(50, backoff_initial=1.0, backoff_max=4.0, rand=lambda: 1.0)
    ticket = [await limiter.acquire() for _ in range(5)]
    limiter._resume_at = 0.0
    delays = []
    for t in ticket:
        delays.append(await limiter.release(t, not_started=True))
        limiter._resume_at = 0.0  # only the computed delay matters here
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    low = AdmissionLimiter(5, backoff_initial=1.0, rand=lambda: 0.0)
    assert await low.release(await low.acquire(), not_started=True) == 0.5, "equal jitter: at least half"


async def test_a_run_that_ends_lifts_a_backoff_the_server_did_not_ask_for() -> None:
    limiter = AdmissionLimiter(3, backoff_initial=30.0, backoff_max=30.0)
    running = await limiter.acquire()
    await limiter.release(await limiter.acquire(), not_started=True)
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.02)
    assert not waiter.done(), "paused after the 429"
    await limiter.release(running)  # a slot freed on the server
    await limiter.release(await asyncio.wait_for(waiter, 1))


async def test_call_sends_again_only_when_not_started() -> None:
    limiter = AdmissionLimiter(2, backoff_initial=0.001, backoff_max=0.002)
    answers: list[Any] = [turned_away(), turned_away(0.0), "done"]

    async def send() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    assert await limiter.call(send) == "done"
    assert limiter.state().not_started == 2 and limiter.state().in_flight == 0

    async def fails() -> str:
        raise ValueError("a run that failed is not sent again")

    with pytest.raises(ValueError):
        await limiter.call(fails)
    with pytest.raises(RunNotStartedError):
        await limiter.call(lambda: _raise(turned_away(0.0)), max_turn_aways=1)
    assert limiter.state().in_flight == 0


async def _raise(exc: Exception) -> str:
    raise exc


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AdmissionLimiter(0)
    with pytest.raises(ValueError):
        AdmissionLimiter(2, decrease=1.5)


# -- against the Dify emulator's concurrency cap -------------------------------------------------

CAP = 4
BURST = 24


@pytest.mark.slow
async def test_burst_over_difys_cap_all_complete_and_the_limit_settles_near_it() -> None:
    """24 runs, max_concurrency 12, Dify capped at 4 running runs: every run completes once, none
    fails, every 429 is DifyRunNotStartedError, and the limit ends within a step of the cap."""
    options = {**BACKENDS["dify"].options, "max_active_requests": CAP}
    with DifyEmulator(**options) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, max_retries=1, idle_timeout=5)
        limiter = AdmissionLimiter(12, backoff_initial=0.05, backoff_max=0.4)
        turned: list[BaseException] = []
        peak = 0

        async def one(client: AsyncDifyClient, n: int) -> str:
            nonlocal peak

            async def send() -> str:
                nonlocal peak
                peak = max(peak, limiter.state().in_flight)
                try:
                    events = [e async for e in client.stream_workflow({"seconds": 0.15, "steps": 2}, user=f"u{n}")]
                except RunNotStartedError as exc:
                    turned.append(exc)
                    raise
                return str(events[-1].data.get("status"))

            return await limiter.call(send)

        async with AsyncDifyClient(config) as client:
            statuses = await asyncio.gather(*(one(client, n) for n in range(BURST)))
        assert statuses == ["succeeded"] * BURST
        assert emu.runs_started(LONG_APP_KEY) == BURST, "each run started exactly once"
        assert turned and all(isinstance(e, DifyRunNotStartedError) and e.status_code == 429 for e in turned)
        assert all(getattr(e, "code", None) == "too_many_requests" for e in turned)
        assert CAP - 1 <= limiter.limit <= CAP + 2, limiter.state().describe()
