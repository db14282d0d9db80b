"""Fewer ledger writes (``ItemLedger(flush_every=...)``): which marks wait for their shard's next write,
and that a crash before the flush costs nothing (real emulators for the batches).

Immediate: the intent (fail closed), the run id, Docify's bought mark. Deferred: the bought mark of a
backend that re-attaches by run id (Dify), whose result is stored first and whose run id is durable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from docify_provider._core.admission import AdmissionLimiter
from docify_provider._core.errors import LedgerError
from docify_provider.batch import BatchRunner, ItemLedger, MemoryKV, MemoryResults
from docify_provider.batch.backends import DifyBatch, DocifyBatch
from docify_provider.dify.client import AsyncDifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.docify import AsyncDocifyClient, ClientConfig
from docify_provider.durable.policy import DIFY, DOCIFY, Action, decide
from docify_provider.testing import SUMMARY_KEY, DocifyEmulator
from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from helpers import BACKENDS, SUMMARY_INPUTS

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 0.2, "max_retries": 2}
N = 12


def states(kv: MemoryKV) -> dict[int, str]:
    return {int(i): row[0] for i, row in kv.values["batch:0"]["items"].items()}


async def test_a_dify_bought_mark_rides_on_the_next_write_or_the_timer() -> None:
    kv, results = MemoryKV(), MemoryResults()
    ledger = ItemLedger(kv, results, flush_every=0.2)
    await ledger.load(4)
    await ledger.intend(0)
    await ledger.started(0, "run-0", "task-0")
    writes = kv.writes
    await ledger.bought(0, {"raw": 1}, "run-0", reattachable=True)
    assert kv.writes == writes and states(kv)[0] == "s", "deferred: not written yet"
    assert results.records[0] == {"raw": 1}, "the result itself is stored at once"
    await ledger.intend(1)
    assert states(kv) == {0: "b", 1: "s"}, "the mark rode on the next intent's write"
    await ledger.started(1, "run-1")
    await ledger.bought(1, {"raw": 2}, "run-1", reattachable=True)
    assert states(kv)[1] == "s"
    await asyncio.sleep(0.35)
    assert states(kv)[1] == "b", "or the timer wrote it flush_every seconds later"
    assert ledger.io()["ledger_writes"] == kv.writes == 5
    assert ledger.io()["result_writes"] == 2 and ledger.io()["store_writes"] == 7


async def test_what_stays_immediate() -> None:
    kv = MemoryKV()
    ledger = ItemLedger(kv, MemoryResults(), flush_every=60)
    await ledger.load(3)
    await ledger.intend(0)
    await ledger.started(0, "session-0")
    await ledger.bought(0, {"raw": 0}, "session-0", reattachable=False)
    assert states(kv)[0] == "b", "Docify: a lost mark would leave an unknown item, so it is written at once"
    await ledger.intend(1)
    await ledger.bought(1, {"raw": 1}, "run-1", reattachable=True)
    assert states(kv)[1] == "b", "no durable run id to re-attach by: written at once"
    await ledger.intend(2)
    kv.fail_writes_after = kv.writes
    await ledger.started(2, "run-2")  # best effort: the write fails, the id is not durable
    kv.fail_writes_after = None
    await ledger.bought(2, {"raw": 2}, "run-2", reattachable=True)
    assert kv.values["batch:0"]["items"]["2"][:2] == ["b", "run-2"], "its run id was not durable: written now"


async def test_flush_writes_what_waits_and_a_crash_before_it_is_reattached() -> None:
    kv = MemoryKV()
    ledger = ItemLedger(kv, MemoryResults(), flush_every=60)
    await ledger.load(2)
    for i in range(2):
        await ledger.intend(i)
        await ledger.started(i, f"run-{i}")
    await ledger.bought(0, {"raw": 0}, "run-0", reattachable=True)
    # the process dies here: run 0's mark never reaches the store
    reloaded = ItemLedger(kv, MemoryResults())
    await reloaded.load(2)
    assert decide(reloaded.known(0, DIFY), DIFY).action is Action.REATTACH, "Dify re-attaches by run id"
    assert decide(reloaded.known(0, DOCIFY), DOCIFY).action is Action.UNKNOWN, "why Docify's mark is immediate"
    await ledger.flush()
    assert states(kv) == {0: "b", 1: "s"}
    await ledger.flush()  # nothing left: no write
    assert ledger.io()["ledger_writes"] == kv.writes == 5


@pytest.mark.slow
async def test_dify_batch_writes_fewer_and_a_crash_before_the_flush_buys_nothing_twice() -> None:
    with DifyEmulator(**{**BACKENDS["dify"].options, "max_active_requests": 4}) as emu:
        config = DifyClientConfig(api_key=LONG_APP_KEY, base_url=emu.base_url, poll_interval=0.05, **FAST)
        inputs = [{"seconds": 0.2, "label": f"doc-{i}"} for i in range(N)]
        kv, results = MemoryKV(), MemoryResults()
        ledger = ItemLedger(kv, results, try_number=1, flush_every=60)

        async def died_before_the_flush() -> None:
            for timer in ledger._timers.values():
                timer.cancel()

        ledger.flush = died_before_the_flush  # type: ignore[method-assign]
        limiter = AdmissionLimiter(6, backoff_initial=0.05, backoff_max=0.3)
        first = await BatchRunner(
            DifyBatch(), lambda: AsyncDifyClient(config), ledger, max_concurrency=6, limiter=limiter, user="u"
        ).run(inputs)
        assert first.counts["succeeded"] == N and first.counts["turned_away"] > 0
        # per item at most an intent and a run id write (a 429 adds its forget and a new intent); the bought
        # marks rode on later writes: none of their own
        away = first.counts["turned_away"]
        assert ledger.io()["ledger_writes"] <= 2 * N + 2 * away, (ledger.io(), first.counts)
        assert first.counts["store_writes"] == ledger.io()["ledger_writes"] + N, "+ one result write an item"
        left_sent = [i for i, state in states(kv).items() if state == "s"]
        assert left_sent, "the last marks never reached the store (no flush)"
        assert all(kv.values["batch:0"]["items"][str(i)][1] for i in left_sent), "each with its run id"

        second = await BatchRunner(
            DifyBatch(), lambda: AsyncDifyClient(config), ItemLedger(kv, results, try_number=2), user="u"
        ).run(inputs)
        assert second.counts["succeeded"] == N
        assert second.counts["reused"] == N - len(left_sent), "the others were re-attached, their results read again"
        assert emu.runs_started(LONG_APP_KEY) == N, "nothing was sent twice"
        labels = sorted(run.inputs["label"] for run in emu.runs)
        assert labels == sorted(item["label"] for item in inputs), "every document run exactly once"


@pytest.mark.slow
async def test_docify_batch_marks_every_item_bought_at_once() -> None:
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        config = ClientConfig(api_key=SUMMARY_KEY, base_url=emu.base_url, **FAST)
        kv = MemoryKV()
        ledger = ItemLedger(kv, MemoryResults(), flush_every=60)
        flushed: list[bool] = []

        async def flush() -> None:
            flushed.append(not ledger._timers)

        ledger.flush = flush  # type: ignore[method-assign]
        result = await BatchRunner(DocifyBatch(), lambda: AsyncDocifyClient(config), ledger, user="u").run(
            [SUMMARY_INPUTS] * 4
        )
        assert result.counts["succeeded"] == 4 and flushed == [True], "nothing was left waiting for the flush"
        assert set(states(kv).values()) == {"b"}


async def test_a_failed_timed_write_is_flushed_and_a_failed_intent_is_not_carried() -> None:
    kv = MemoryKV()
    ledger = ItemLedger(kv, MemoryResults(), flush_every=0.05)
    await ledger.load(3)
    await ledger.intend(0)
    await ledger.started(0, "run-0")
    await ledger.bought(0, {"raw": 0}, "run-0", reattachable=True)
    kv.fail_writes_after = kv.writes
    await asyncio.sleep(0.15)  # the timer's write fails (logged)
    with pytest.raises(LedgerError):
        await ledger.intend(1)  # fails closed: item 1 is not sent
    kv.fail_writes_after = None
    await ledger.flush()
    assert states(kv) == {0: "b"}, "the failed write is made at the end; item 1's intent, never sent, is not"
