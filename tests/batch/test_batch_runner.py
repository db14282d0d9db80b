"""``BatchRunner`` against each backend's emulator over real sockets (no Airflow).

One batch holds what the hidden checks name: a concurrency cap (Dify's ``max_active_requests``, a
429 for Docify), a cut stream and a failing item. A second pass over the same ledger sends only the
items never sent (and the failed one), reuses the bought ones, and reports Docify's unknown item
without sending it again. Every assertion on money is on the emulator's own run counter.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from docify_provider._core.admission import AdmissionLimiter
from docify_provider._core.errors import LedgerError
from docify_provider.batch import BatchRunner, ItemLedger, MemoryKV, MemoryResults, Progress
from docify_provider.batch.backends import DifyAppBatch, DifyBatch, DocifyBatch
from docify_provider.dify.client import AsyncDifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify_openapi.client import AsyncDifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.docify import AsyncDocifyClient, ClientConfig
from docify_provider.testing import SUMMARY_KEY, DocifyEmulator
from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID, DifyOpenAPIEmulator
from docify_provider.testing.faults import Fault
from helpers import BACKENDS, SUMMARY_INPUTS

pytestmark = pytest.mark.slow

FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "retry_after_cap": 0.2,
    "max_retries": 2,
    "idle_timeout": 3,
}
DIFY_FAST = {**FAST, "poll_interval": 0.05, "recovery_timeout": 5}
N = 12
FIRST_PASS = 8  # the first pass sees only these: the others are "never sent" for the second


def runner(backend: Any, factory: Callable[[], Any], ledger: ItemLedger, *, cap: int = 6, **kw: Any) -> BatchRunner:
    limiter = AdmissionLimiter(cap, backoff_initial=0.05, backoff_max=0.3)
    return BatchRunner(backend, factory, ledger, max_concurrency=cap, limiter=limiter, user="batch-user", **kw)


def by_status(items: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [item for item in items if item["status"] == status]


def check_in_order(items: list[dict[str, Any]], n: int) -> None:
    assert [item["index"] for item in items] == list(range(n)), "items come back in input order"


# -- Dify Service API -------------------------------------------------------------------------------


async def test_dify_batch_with_cap_cut_stream_and_failure_then_a_second_pass() -> None:
    with DifyEmulator(**{**BACKENDS["dify"].options, "max_active_requests": 3}) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, **DIFY_FAST)
        emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
        emu.inject(Fault("stream", "error_event", times=1))
        inputs = [{"seconds": 0.15, "steps": 2} for _ in range(N)]
        kv, results = MemoryKV(), MemoryResults()
        lines: list[Progress] = []

        first = await runner(
            DifyBatch(),
            lambda: AsyncDifyClient(config),
            ItemLedger(kv, results, try_number=1),
            progress=lines.append,
            progress_every=0.1,
        ).run(inputs[:FIRST_PASS])
        check_in_order(first.items, FIRST_PASS)
        assert first.counts["succeeded"] == FIRST_PASS - 1 and first.counts["failed"] == 1
        assert first.counts["turned_away"] > 0, "the cap of 3 was met (429 not started) and waited out"
        assert emu.runs_started(LONG_APP_KEY) == FIRST_PASS, "the cut stream was re-attached, not re-sent"
        ok = by_status(first.items, "succeeded")
        assert all(item["workflow_run_id"] and item["outputs"] is not None for item in ok)
        failed = by_status(first.items, "failed")[0]
        assert failed["workflow_run_id"] and failed["error_type"] == "DifyRunFailedError"
        assert lines and "documents/h" in lines[-1].line() and lines[-1].done == FIRST_PASS

        second = await runner(DifyBatch(), lambda: AsyncDifyClient(config), ItemLedger(kv, results, try_number=2)).run(
            inputs
        )
        check_in_order(second.items, N)
        assert second.counts["succeeded"] == N and second.counts["reused"] == FIRST_PASS - 1
        # sent again: the failed item and the four never sent; nothing bought is bought twice
        assert emu.runs_started(LONG_APP_KEY) == FIRST_PASS + 1 + (N - FIRST_PASS)
        assert second.items[failed["index"]]["workflow_run_id"] != failed["workflow_run_id"]


async def test_a_pass_stopped_by_a_restart_reattaches_the_runs_it_had_started() -> None:
    """A row left 'sent' with a run id (the triggerer died mid-run) is re-attached, never re-sent."""
    with DifyEmulator(**BACKENDS["dify"].options) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, **DIFY_FAST)
        async with AsyncDifyClient(config) as client:
            stream = client.stream_workflow({"seconds": 0.3, "steps": 2}, user="batch-user")
            first = await stream.__anext__()
            await stream.aclose()  # the process holding the stream is gone; the run goes on
        kv = MemoryKV()
        kv.values["batch:0"] = {"items": {"0": ["s", first.workflow_run_id, first.task_id, "then", 1]}}
        result = await runner(DifyBatch(), lambda: AsyncDifyClient(config), ItemLedger(kv, MemoryResults())).run(
            [{"seconds": 0.3, "steps": 2}, {"seconds": 0.05}]
        )
        assert [item["status"] for item in result.items] == ["succeeded", "succeeded"]
        assert result.items[0]["workflow_run_id"] == first.workflow_run_id
        assert emu.runs_started(LONG_APP_KEY) == 2, "one run re-attached, one sent"


async def test_nothing_is_sent_after_send_until() -> None:
    """``send_until`` (the deferred batch's stop before ``execution_timeout``): items whose turn comes after
    it (here: when the first two 3 s runs free their slots) are not sent, nothing uploaded, and say why."""
    import time

    with DifyEmulator(**BACKENDS["dify"].options) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, **DIFY_FAST)
        inputs = [{"seconds": 3, "steps": 1, "label": f"doc-{i}"} for i in range(4)]
        result = await runner(
            DifyBatch(),
            lambda: AsyncDifyClient(config),
            ItemLedger(MemoryKV(), MemoryResults()),
            cap=2,
            send_until=time.time() + 1.2,  # well before the first two runs end
        ).run(inputs)
        assert [item["status"] for item in result.items] == ["succeeded", "succeeded", "not_sent", "not_sent"]
        assert all("sending stopped before execution_timeout" in item["error"] for item in result.items[2:])
        assert sorted(run.inputs["label"] for run in emu.runs) == ["doc-0", "doc-1"], "nothing sent after it"


# -- Dify account API -------------------------------------------------------------------------------


async def test_dify_app_batch_with_cap_cut_stream_and_failure_then_a_second_pass() -> None:
    with DifyOpenAPIEmulator(**{**BACKENDS["dify_openapi"].options, "max_active_requests": 3}) as emu:
        config = DifyOpenAPIClientConfig(api_key=ACCOUNT_TOKEN, base_url=emu.base_url, **FAST, poll_interval=0.05)
        emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
        emu.inject(Fault("stream", "error_event", times=1))
        inputs = [{"seconds": 0.15, "steps": 2} for _ in range(N)]
        kv, results = MemoryKV(), MemoryResults()
        backend = DifyAppBatch(app=LONG_APP_ID)

        first = await runner(backend, lambda: AsyncDifyOpenAPIClient(config), ItemLedger(kv, results)).run(
            inputs[:FIRST_PASS]
        )
        check_in_order(first.items, FIRST_PASS)
        assert (first.counts["succeeded"], first.counts["failed"]) == (FIRST_PASS - 1, 1)
        assert first.counts["turned_away"] > 0
        assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == FIRST_PASS

        second = await runner(backend, lambda: AsyncDifyOpenAPIClient(config), ItemLedger(kv, results)).run(inputs)
        assert second.counts["succeeded"] == N and second.counts["reused"] == FIRST_PASS - 1
        assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == N + 1


# -- Docify -----------------------------------------------------------------------------------------


async def test_docify_batch_reports_the_unknown_item_and_never_resends_it() -> None:
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        config = ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **FAST)
        emu.inject(Fault("stream", "status", status=429, retry_after=0.1, times=2))
        emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
        emu.inject(Fault("stream", "failed_run", message="Bad scan", times=1))
        inputs = [{**SUMMARY_INPUTS, "text": f"Document {i}. It has two sentences."} for i in range(N)]
        kv, results = MemoryKV(), MemoryResults()

        first = await runner(DocifyBatch(), lambda: AsyncDocifyClient(config), ItemLedger(kv, results)).run(
            inputs[:FIRST_PASS]
        )
        check_in_order(first.items, FIRST_PASS)
        counts = first.counts
        assert (counts["succeeded"], counts["failed"], counts["unknown"]) == (FIRST_PASS - 2, 1, 1)
        assert counts["turned_away"] == 2, "both 429s waited out and sent again"
        assert emu.runs_started(SUMMARY_KEY) == FIRST_PASS, "every item started once; the 429s started none"
        unknown = by_status(first.items, "unknown")[0]
        assert unknown["session_id"], "the cut stream names the session it saw"
        assert unknown["error_type"] == "DocifyOutcomeUnknownError" and "not re-sent" in unknown["error"]
        assert all(isinstance(item["outputs"], dict) for item in by_status(first.items, "succeeded"))

        second = await runner(DocifyBatch(), lambda: AsyncDocifyClient(config), ItemLedger(kv, results)).run(inputs)
        check_in_order(second.items, N)
        again = second.items[unknown["index"]]
        assert again["status"] == "unknown" and again["session_id"] == unknown["session_id"]
        assert "not re-sent" in again["error"] and "no status endpoint" in again["error"]
        assert second.counts["succeeded"] == N - 1 and second.counts["reused"] == FIRST_PASS - 2
        # sent again: the failed item and the four never sent; never the unknown one
        assert emu.runs_started(SUMMARY_KEY) == FIRST_PASS + 1 + (N - FIRST_PASS)


async def test_a_ledger_that_cannot_be_written_sends_nothing_more() -> None:
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        config = ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **FAST)
        kv = MemoryKV()
        kv.fail_writes_after = 0
        result = await runner(DocifyBatch(), lambda: AsyncDocifyClient(config), ItemLedger(kv, MemoryResults())).run(
            [SUMMARY_INPUTS] * 4
        )
        assert result.counts["not_sent"] == 4 and result.stopped and "not sent" in result.stopped
        assert emu.runs_started() == 0


async def test_a_ledger_that_cannot_be_read_sends_nothing() -> None:
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        kv = MemoryKV()
        kv.fail_reads = True
        config = ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **FAST)
        with pytest.raises(LedgerError, match="nothing is sent"):
            await runner(DocifyBatch(), lambda: AsyncDocifyClient(config), ItemLedger(kv, MemoryResults())).run(
                [SUMMARY_INPUTS]
            )
        assert emu.runs_started() == 0


def test_the_batch_engine_imports_no_airflow() -> None:
    code = (
        "import sys, docify_provider.batch; print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
