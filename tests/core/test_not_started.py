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
