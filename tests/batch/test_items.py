"""The per-item ledger (``batch/items.py``) without a server: compact rows, group commit, fail closed,
and what the one run policy decides from each row."""

from __future__ import annotations

import asyncio
import json

import pytest

from docify_provider._core.errors import LedgerError
from docify_provider.batch.items import ItemLedger, MemoryKV, MemoryResults
from docify_provider.durable.policy import DIFY, DOCIFY, Action, decide


async def test_rows_are_compact_sharded_and_results_kept_apart() -> None:
    kv, results = MemoryKV(), MemoryResults()
    ledger = ItemLedger(kv, results, key="docify_batch", shard_size=100, try_number=1)
    await ledger.load(250)
    for i in (0, 150, 249):
        await ledger.intend(i)
    await ledger.started(150, "run-150", "task-150")
    await ledger.bought(249, {"body": {"outputs": {"text": "x" * 1000}}}, "run-249")
    assert set(kv.values) == {"docify_batch:0", "docify_batch:1", "docify_batch:2"}
    assert kv.values["docify_batch:1"]["items"]["150"][:3] == ["s", "run-150", "task-150"]
    assert [set(kv.values[f"docify_batch:{n}"]["items"]) for n in range(3)] == [{"0"}, {"150"}, {"249"}]
    assert kv.values["docify_batch:2"]["items"]["249"][0] == "b"
    assert len(json.dumps(kv.values["docify_batch:2"])) < 120, "a bought row holds no result"
    assert results.records[249]["body"]["outputs"]["text"] == "x" * 1000
    await ledger.forget(0)
    assert kv.values["docify_batch:0"]["items"] == {}
    await ledger.forget(150, error="DifyRunFailedError: boom", run_id="run-150")
    assert ledger.row(150) == {
        "state": "f",
        "run_id": "run-150",
        "task_id": None,
        "error": "DifyRunFailedError: boom",
        "try": 1,
    }
    assert not ledger.known(150, DIFY).sent, "a failed item is sent again by a later pass"
    assert ledger.counts() == {"sent": 0, "bought": 1, "failed": 1}


async def test_concurrent_intents_share_writes() -> None:
    kv = MemoryKV()
    ledger = ItemLedger(kv, MemoryResults(), shard_size=1000)
    await ledger.load(500)

    class SlowKV(MemoryKV):
        async def set(self, key: str, value: object) -> None:
            await asyncio.sleep(0.01)
            await kv.set(key, value)

    ledger.kv = SlowKV()
    await asyncio.gather(*(ledger.intend(i) for i in range(200)))
    assert kv.writes < 20, f"200 intents in {kv.writes} writes (group commit)"
    assert len(kv.values["batch:0"]["items"]) == 200, "every intent is durable when intend returns"


async def test_what_the_policy_decides_per_row() -> None:
    kv = MemoryKV()
    kv.values["batch:0"] = {
        "items": {
            "1": ["s", None, None, "t", 1],
            "2": ["s", "run-2", "task-2", "t", 1],
            "3": ["b", "run-3", None, "t", 1],
        }
    }
    ledger = ItemLedger(kv, MemoryResults())
    await ledger.load(4)
    assert ledger.counts() == {"sent": 2, "bought": 1, "failed": 0}
    actions = {
        (i, backend.label): decide(ledger.known(i, backend), backend).action
        for i in range(4)
        for backend in (DOCIFY, DIFY)
    }
    assert actions[(0, "Docify")] is Action.SEND and actions[(0, "Dify")] is Action.SEND
    assert actions[(1, "Docify")] is Action.UNKNOWN and actions[(1, "Dify")] is Action.UNKNOWN  # no run id
    assert actions[(2, "Docify")] is Action.UNKNOWN and actions[(2, "Dify")] is Action.REATTACH
    assert actions[(3, "Docify")] is Action.REUSE and actions[(3, "Dify")] is Action.REUSE


async def test_fails_closed() -> None:
    kv = MemoryKV()
    kv.fail_reads = True
    with pytest.raises(LedgerError):
        await ItemLedger(kv, MemoryResults()).load(10)
    kv.fail_reads, kv.fail_writes_after = False, 0
    ledger = ItemLedger(kv, MemoryResults())
    await ledger.load(10)
    with pytest.raises(LedgerError, match="not sent"):
        await ledger.intend(3)
    await ledger.started(3, "run")  # best effort: logged, not raised


def test_account_api_chat_apps_are_not_reattached() -> None:
    from docify_provider.batch.backends import DifyAppBatch

    assert DifyAppBatch(app="a", mode="workflow").policy.can_reattach
    chat = DifyAppBatch(app="a", mode="chat").policy
    assert not chat.can_reattach and "chat" in chat.no_reattach
