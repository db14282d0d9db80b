"""A batch that meets ``execution_timeout``: its runs stopped, every item reported, the task failed (issue 20).

The same ending whichever side held the batch:

* deferred (the default): Airflow's scheduler times the deferral out, the triggerer cancels the
  batch trigger (which closes its streams and stops nothing, as a triggerer shutdown would) and
  the worker resumes with ``__fail__`` and the trigger-timeout reason
  (``BatchOperatorBase.resume_execution``). The ledger is read from its store;
* on the worker (``deferrable=False``): ``AirflowTaskTimeout`` is raised inside the runner's event
  loop, which is cancelled (its streams closed, its deferred ledger writes flushed); the ledger in
  memory is current.

Then ``time_out``: every run the ledger shows started and not settled is stopped by the one rule
(``batch.stopping.stop_unsettled``: Dify's Service API and account API stop by task id, one log line
per run with what it became; Docify has no stop endpoint, its in-flight items are reported unknown
and never re-sent); every item is reported from the ledger as ``execute_complete`` reports it
(``batch_deferred.report_items``: ``BatchRunner(report_only=True)``, one status rule); the XCom is
pushed and ``results_to`` written, so results already bought are never dropped; and the task fails
with ``operators.batch.BatchTimeoutError`` naming how many items were done, failed, stopped, left in flight and never
sent. Attachments are not downloaded past the timeout: a retry reuses the bought items and stores
their files without buying them again.

A retry sends only what is left: failed items (a stopped item is one: its row says failed, the
server having shown its run stopped, so the retry pays for a new run of it), and items never sent;
bought items are reused, Dify runs not seen stopped are re-attached by run id, Docify items in flight
stay unknown (never re-sent unless ``allow_resubmit``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider.batch import ItemLedger
    from docify_provider.operators.batch import BatchOperatorBase

WHY = "execution_timeout"


def time_out(
    op: BatchOperatorBase, context: Context, *, ledger: ItemLedger | None = None, user: str | None = None
) -> NoReturn:
    """Stop the batch's unsettled runs, report every item, push the XCom, write ``results_to``, then raise
    ``BatchTimeoutError``. ``ledger``: the worker's own (current); None: read it (a deferred batch)."""
    from docify_provider.batch.stopping import stop_unsettled
    from docify_provider.hooks.base import resolve_user
    from docify_provider.operators.batch_deferred import report_items

    count = len(op._items())
    limit = op.execution_timeout
    op.log.error("The batch met execution_timeout (%s): stopping its runs, then reporting every item", limit)
    try:
        op.hook.config  # noqa: B018 - resolved here, not inside the event loop (durable.batch_store)
        if ledger is None:
            ledger = op._ledger(context, count, resumed=True)
            asyncio.run(ledger.load(count))
        user = user or resolve_user(op, op.hook)
        backend = op._backend()
        stops = asyncio.run(
            stop_unsettled(
                ledger, backend, op.hook.async_client, count=count, user=user, log=op.log, why=WHY, settle=True
            )
        )
        unsent = f"not sent before {WHY}; a retry sends it"
        result = report_items(op, ledger, count, {"open": stops.left, "stopped": unsent})
    finally:
        op.hook.close()
    if limit is not None:
        result.elapsed = limit.total_seconds()  # the batch ran until its limit; the report took no time
    counts = result.counts
    stopped = len(stops.stopped)
    label = backend.policy.label
    stop_text = f"{stopped} stopped" if backend.can_stop else f"none stopped ({label} runs cannot be stopped)"
    follow = f"{label} runs left going are re-attached by run id, " if backend.policy.can_reattach else ""
    where = "this task's XCom" + (f" and {op._results_url()}" if op.results_to else "")
    message = (
        f"Batch stopped at execution_timeout ({limit}): {counts['succeeded']} item(s) done, "
        f"{counts['failed'] - stopped} failed, {stop_text}, {counts['unknown'] + counts['paused']} in flight and "
        f"not stopped (unknown or paused), {counts['not_sent']} never sent, of {counts['total']}. Every item is in "
        f"{where}. A retry sends only what is left: the failed, stopped and never-sent items; bought items are "
        f"reused, {follow}items whose outcome is unknown are not re-sent."
    )
    op._finish(context, result, timed_out=message)
    raise AssertionError("unreachable: _finish raises BatchTimeoutError")  # pragma: no cover


__all__ = ["time_out"]
