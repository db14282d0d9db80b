"""A 429 to a run request is ``RunNotStartedError`` ("not started, safe to send again"), on every backend.

Written once in ``_core/http_errors.error_for_status`` (``starts_run``); each backend has its
class. What must stay apart from it, over real sockets against the emulators:

* a 429 to a read or an upload is a plain ``RateLimitedError`` (and retried by the transport);
* Dify's ``rate_limit_error`` (the model provider's limit, hit by a run that started) is a failed run;
* the transport never re-sends the run itself: one request, no run started.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from docify_provider._core.errors import RateLimitedError, RunFailedError, RunNotStartedError
from docify_provider.dify.client import AsyncDifyClient, DifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import DifyRunNotStartedError
from docify_provider.dify_openapi.client import AsyncDifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.errors import DifyOpenAPIRunNotStartedError
from docify_provider.docify import ClientConfig, DocifyClient
from docify_provider.docify.errors import DocifyRateLimitedError, DocifyRunNotStartedError
from docify_provider.testing import SUMMARY_KEY, DocifyEmulator
from docify_provider.testing.dify import LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID, DifyOpenAPIEmulator
from docify_provider.testing.faults import Fault
from helpers import BACKENDS, SUMMARY_INPUTS, TEXT_INPUTS

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 0.2, "max_retries": 2}


def _posts(emu: Any, endpoint: str) -> int:
    return sum(1 for r in emu.requests if r.endpoint == endpoint)


@pytest.mark.parametrize("endpoint", ["run", "stream"])
def test_docify_429_to_a_run_is_not_started_and_not_resent(endpoint: str) -> None:
    # Docify documents no 429; one from its gateway comes with the status line, before any event,
    # so no session exists: the run was turned away.
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        emu.inject(Fault(endpoint, "status", status=429, retry_after=3, times=1))
        with DocifyClient(ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **FAST)) as client:
            with pytest.raises(DocifyRunNotStartedError) as caught:
                if endpoint == "run":
                    client.run(SUMMARY_INPUTS)
                else:
                    list(client.stream(SUMMARY_INPUTS))
            assert caught.value.retry_after == 3 and caught.value.status_code == 429
            assert "not started" in str(caught.value)
            assert _posts(emu, endpoint) == 1 and emu.runs_started() == 0
            # sending it again is the caller's choice, and safe: one run in all
            assert client.run(SUMMARY_INPUTS).is_success
            assert emu.runs_started() == 1


def test_docify_429_to_a_read_stays_a_rate_limit() -> None:
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        emu.inject(Fault("info", "status", status=429, retry_after=0, times=5))
        with DocifyClient(ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **{**FAST, "max_retries": 1})) as c:
            with pytest.raises(DocifyRateLimitedError) as caught:
                c.get_scenario_info()
        assert not isinstance(caught.value, RunNotStartedError)
        assert _posts(emu, "info") == 2, "a read is retried by the transport"


def test_dify_app_concurrency_429_is_not_started_for_blocking_and_streaming_runs() -> None:
    with DifyEmulator(**{**BACKENDS["dify"].options, "max_active_requests": 1}) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, **FAST)
        with DifyClient(config) as client:
            first = client.stream_workflow({"seconds": 1.0, "steps": 2}, user="u")
            next(iter(first))  # the first run holds the only slot
            for call in (
                lambda: client.run_workflow({"seconds": 0.1}, user="u"),
                lambda: list(client.stream_workflow({"seconds": 0.1}, user="u")),
            ):
                with pytest.raises(DifyRunNotStartedError) as caught:
                    call()
                assert caught.value.code == "too_many_requests" and caught.value.status_code == 429
            assert emu.runs_started(LONG_APP_KEY) == 1
            list(first)


def test_dify_model_rate_limit_is_a_failed_run_not_a_turn_away() -> None:
    # C2: the newest Dify answers a blocking run that hit the model provider's limit with 429
    # rate_limit_error. The run started: it must never read as "not started".
    with DifyEmulator(**BACKENDS["dify"].options) as emu:
        emu.inject(Fault("run", "error_event", code="rate_limit_error", times=1))
        with DifyClient(DifyClientConfig(api_key=TEXT_APP_KEY, base_url=emu.base_url, **FAST)) as client:
            with pytest.raises(RunFailedError) as caught:
                client.run_workflow(TEXT_INPUTS, user="u")
        assert not isinstance(caught.value, RateLimitedError)
        assert emu.runs_started(TEXT_APP_KEY) == 1


async def test_dify_openapi_429s_to_a_run_are_not_started() -> None:
    with DifyOpenAPIEmulator(**{**BACKENDS["dify_openapi"].options, "max_active_requests": 1}) as emu:
        config = DifyOpenAPIClientConfig(api_key=ACCOUNT_TOKEN, base_url=emu.base_url, **FAST)
        async with AsyncDifyOpenAPIClient(config) as client:
            first = client.run_app(LONG_APP_ID, {"seconds": 1.0, "steps": 2})
            await first.__anext__()
            with pytest.raises(DifyOpenAPIRunNotStartedError) as caught:
                [e async for e in client.run_app(LONG_APP_ID, {"seconds": 0.1})]
            assert caught.value.code == "too_many_requests"
            [e async for e in first]
            # the per-token limiter answers raw {"error": "rate_limited", "retry_after_ms"}: not started either
            emu.inject(Fault("stream", "status", status=429, retry_after=2, code="rate_limited", times=1))
            with pytest.raises(DifyOpenAPIRunNotStartedError) as caught:
                [e async for e in client.run_app(LONG_APP_ID, {"seconds": 0.1})]
            assert caught.value.retry_after == 2
        assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1


async def test_the_async_dify_client_says_the_same() -> None:
    with DifyEmulator(**{**BACKENDS["dify"].options, "max_active_requests": 1}) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, **FAST)
        async with AsyncDifyClient(config) as client:
            first = client.stream_workflow({"seconds": 0.5, "steps": 2}, user="u")
            await first.__anext__()
            second = asyncio.ensure_future(client.run_workflow({"seconds": 0.1}, user="u"))
            with pytest.raises(DifyRunNotStartedError):
                await second
            [e async for e in first]
        assert emu.runs_started(LONG_APP_KEY) == 1


# -- the single-run wait (``_core/not_started.py``), without sockets or real time ------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _waits(clock: _Clock, **kwargs: Any) -> Any:
    from docify_provider._core.not_started import NotStartedWaits

    options = {"label": "Dify", "batch_operator": "DifyBatchWorkflowOperator", "clock": clock, "rand": lambda: 1.0}
    return NotStartedWaits(**{**options, **kwargs})


def _turned_away(retry_after: float | None = None) -> DifyRunNotStartedError:
    return DifyRunNotStartedError(
        "Dify turned the run request away (HTTP 429, not started): too_many_requests",
        status_code=429,
        endpoint="POST /workflows/run",
        retry_after=retry_after,
    )


def test_the_waits_are_the_batch_limiters_rule_and_bounded() -> None:
    from docify_provider._core.admission import turn_away_delay

    clock = _Clock()
    waits = _waits(clock, max_wait=10, initial=1.0, maximum=4.0, cap=3.0)
    delays = []
    for retry_after in (None, None, 60, None):
        delays.append(waits.next_wait(_turned_away(retry_after)))
        assert waits.line(delays[-1]).startswith("Turned away by the server (429, run not started): waiting ")
        clock.now += delays[-1]
    # backoff 1, 2 (rand 1.0: the top of each "equal jitter" range), Retry-After 60 capped at 3, then 4 (the max)
    assert (
        delays
        == [1.0, 2.0, 3.0, 4.0]
        == [
            turn_away_delay(r, n, initial=1.0, maximum=4.0, cap=3.0, rand=lambda: 1.0)
            for n, r in enumerate((None, None, 60, None))
        ]
    )
    assert waits.line(4.0) == (
        "Turned away by the server (429, run not started): waiting 4.0s before sending again "
        "(attempt 5; waited 10s of at most 10s)"
    )
    with pytest.raises(DifyRunNotStartedError) as caught:
        waits.next_wait(_turned_away())  # 10 s waited, 4 more would pass 10
    message = str(caught.value)
    assert message.startswith("Dify turned the run request away 5 times (HTTP 429, not started); the task waited 10s")
    assert "would pass max_wait_not_started=10s. No run was started or billed." in message
    assert "Airflow pool" in message and "DifyBatchWorkflowOperator" in message and "too_many_requests" in message
    assert caught.value.status_code == 429 and isinstance(caught.value.__cause__, DifyRunNotStartedError)


def test_no_wait_passes_the_deadline_and_zero_raises_the_429_itself() -> None:
    clock = _Clock()
    wall = _Clock()
    wall.now = 1000.0
    waits = _waits(clock, max_wait=600, deadline=1002.5, wall=wall)
    assert waits.next_wait(_turned_away(2)) == 2
    wall.now += 2
    with pytest.raises(DifyRunNotStartedError, match="would pass the task's execution_timeout"):
        waits.next_wait(_turned_away(2))
    original = _turned_away(1)
    with pytest.raises(DifyRunNotStartedError) as caught:
        _waits(clock, max_wait=0).next_wait(original)
    assert caught.value is original


@pytest.mark.parametrize("value", [-1, "60", True, None, float("nan"), float("inf")])
def test_a_bad_max_wait_names_the_parameter(value: Any) -> None:
    from docify_provider._core.not_started import check_max_wait

    with pytest.raises(ValueError, match="max_wait_not_started must be"):
        check_max_wait(value)
    assert check_max_wait(0) == 0.0 and check_max_wait(90) == 90.0


def test_the_loop_forgets_before_each_wait_and_stops_on_anything_else() -> None:
    from docify_provider._core.not_started import send_until_started

    clock = _Clock()
    answers: list[Any] = [_turned_away(1), _turned_away(1), "bought"]
    calls: list[str] = []

    def send() -> str:
        calls.append("send")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def sleep(seconds: float) -> None:
        calls.append(f"sleep {seconds:g}")
        clock.now += seconds

    log = __import__("logging").getLogger("test")
    result = send_until_started(
        send, _waits(clock, max_wait=60), before_wait=lambda: calls.append("forget"), log=log, sleep=sleep
    )
    assert result == "bought"
    assert calls == ["send", "forget", "sleep 1", "send", "forget", "sleep 1", "send"]
    with pytest.raises(RunFailedError):
        send_until_started(
            lambda: (_ for _ in ()).throw(RunFailedError("failed")),
            _waits(clock, max_wait=60),
            before_wait=lambda: calls.append("never"),
            log=log,
        )
    assert "never" not in calls
