"""A batch operator's deferrable mode: hand the checked batch to ``BatchTrigger``, then report it (issue 20).

``BatchOperatorBase._settle`` does on the worker what it always does first (inputs, output targets,
the ledger loaded fail-closed, every item not bought checked), then calls ``defer_batch``: the raw
inputs go to the batch's store (``BatchInputs``, chunked Variables beside its ledger), and the task
defers to one ``triggers.batch.BatchTrigger`` whose kwargs name only the backend, the connection id,
the request options and the batch's keys and size (no item inputs, no key). No worker slot waits.

The task resumes in ``complete_batch``:

* ``batch_done``: every item is rebuilt in input order from the ledger and the result store by the
  same ``BatchRunner`` in ``report_only`` mode (bought: succeeded with its outputs and files; a
  failed row: failed with its error; a row left sent: unknown or paused as the trigger said; no row:
  not sent), nothing sent; then the usual ending (attachments, XCom, ``results_to``, the asset
  event, ``allowed_failures``);
* ``timed_out`` (not here: ``BatchOperatorBase.execute_complete`` sends it to
  ``operators.batch_timeout``): the trigger reached the try's ``execution_timeout``, having stopped
  sending a few seconds before it;
* anything else (``trigger_failed``: the trigger could not resolve its connection or read its
  store; a trigger that crashed): the worker finishes the batch itself on the same ledger, which
  re-attaches to, reuses or reports what the trigger sent and sends only what it never sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from docify_provider.operators.base import context_ti
from docify_provider.triggers.batch_plans import BatchInputs

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider.batch import ItemLedger
    from docify_provider.operators.batch import BatchOperatorBase


def defer_batch(
    op: BatchOperatorBase, context: Context, ledger: ItemLedger, items: Sequence[Mapping[str, Any]], user: str
) -> None:
    """Store the raw inputs and defer to ``BatchTrigger`` (raises ``TaskDeferred``); returns only when the
    inputs cannot be stored as JSON (the batch then runs on the worker, logged)."""
    from docify_provider.triggers.batch import BatchTrigger

    why = BatchInputs.as_json(items)
    if why is not None:
        op.log.warning(
            "deferrable=True, but the batch runs on the worker: its inputs are handed to the triggerer as JSON "
            "and %s. Pass paths or storage URLs instead of objects to run it deferred.",
            why,
        )
        return
    if op.force_rerun:
        asyncio.run(_forget_all(ledger, len(items)))
    asyncio.run(BatchInputs(op._kv, op.batch_key).write(items))
    ti = context_ti(context)
    map_index = getattr(ti, "map_index", -1)
    timeout = _timeout(op, context)
    trigger = BatchTrigger(
        backend=op.batch_backend,
        conn_id=op._conn_id(),
        count=len(items),
        batch_key=op.batch_key,
        options=op._options(),
        user=user,
        results_url=op._results_url() if op.results_to else None,
        max_concurrency=op.max_concurrency,
        progress_every=op.progress_every,
        validate=op.validate,
        allow_resubmit=op.allow_resubmit,
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=-1 if map_index is None else int(map_index),
        try_number=ti.try_number,
        deadline=None if timeout is None else time.time() + timeout.total_seconds(),
    )
    state = ledger.counts()
    op.log.info(
        "Batch of %d document(s) checked (%d bought by an earlier try); deferring to the triggerer, which runs "
        "them at most %d at once (item state in %s)",
        len(items),
        0 if op.force_rerun else state["bought"],
        op.max_concurrency,
        op._kv.where,
    )
    op.hook.close()
    op.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)


async def _forget_all(ledger: ItemLedger, count: int) -> None:
    """``force_rerun``: an earlier try's rows are dropped before deferring, so every item is sent once by
    this try, and a trigger restarted mid-batch reuses (never re-buys) what this try bought."""
    await asyncio.gather(*(ledger.forget(index) for index in range(count) if ledger.row(index)))


def _timeout(op: BatchOperatorBase, context: Context) -> Any:
    """What is left of ``execution_timeout`` since the try started (None: no limit)."""
    from datetime import datetime, timedelta, timezone

    if op.execution_timeout is None:
        return None
    started = getattr(context_ti(context), "start_date", None)
    if started is None:
        return op.execution_timeout
    return max(op.execution_timeout - (datetime.now(timezone.utc) - started), timedelta(seconds=1))


def complete_batch(op: BatchOperatorBase, context: Context, event: Mapping[str, Any]) -> Any:
    """The task's side after the trigger (module docstring)."""
    items = op._items()
    status = event.get("status")
    ti = context_ti(context)
    if status != "batch_done":
        why = event.get("message") or f"the trigger's event was {status!r}"
        op.log.warning(
            "The batch trigger did not finish the batch (%s); the worker finishes it on the same ledger: items "
            "sent are re-attached (Dify) or reported (Docify), never sent again; items never sent are sent",
            why,
        )
        result = op._settle(context, items, defer=False, resumed=True)
        _forget_inputs(op, len(items))
        return result
    if event.get("deferred_in_try") not in (None, ti.try_number):
        op.log.warning(
            "The batch trigger was deferred by try %s; this is try %s", event["deferred_in_try"], ti.try_number
        )
    try:
        op.hook.config  # noqa: B018 - resolved here, not inside the event loop
        ledger = op._ledger(context, len(items), resumed=True)
        asyncio.run(ledger.load(len(items)))
        result = report_items(op, ledger, len(items), event)
        if op.attachments_to:
            op._store_attachments(context, result)
    finally:
        op.hook.close()
    value = op._finish(context, result)
    _forget_inputs(op, len(items))
    return value


def report_items(op: BatchOperatorBase, ledger: ItemLedger, count: int, event: Mapping[str, Any]) -> Any:
    """Every item from the ledger, sending nothing (``BatchRunner(report_only=True)``), with the trigger's
    counts of what only it saw (429s turned away, time) and its store reads and writes added to this pass's."""
    from docify_provider.batch import BatchRunner

    def no_client() -> Any:
        raise AssertionError("a batch report sends nothing")

    runner = BatchRunner(
        op._backend(), no_client, ledger, max_concurrency=16, report_only=True, reported=event.get("open")
    )
    result = asyncio.run(runner.run([None] * count))
    counts = event.get("counts") or {}
    result.counts["turned_away"] = int(counts.get("turned_away", 0))
    for io in ("store_writes", "store_reads"):  # the trigger's and this report's: what the batch cost in all
        result.counts[io] = result.counts.get(io, 0) + int(counts.get(io, 0))
    result.elapsed = float(event.get("elapsed") or result.elapsed)
    result.stopped = event.get("stopped")
    for item in result.items:
        if item["status"] == "not_sent" and not item["error"]:
            item["error"] = result.stopped or "the batch trigger did not send it"
    return result


def _forget_inputs(op: BatchOperatorBase, count: int) -> None:
    """The task succeeded: its stored inputs are not needed any more (best effort, logged)."""
    try:
        asyncio.run(BatchInputs(op._kv, op.batch_key).delete(count))
    except Exception:
        op.log.warning("Could not delete the batch's stored inputs; they stay in Airflow Variables", exc_info=True)


__all__ = ["complete_batch", "defer_batch", "report_items"]
