"""``BatchTrigger``: one trigger per deferred batch task instance holds every stream of the batch (issue 20).

The batch operator (``operators.batch``) checks every item on the worker, stores the raw item inputs
in the batch's store (``triggers.batch_plans.BatchInputs``) and defers to this trigger. Its kwargs
name the backend, the connection id, the backend's request options and the batch's size and keys:
a few hundred bytes whatever the batch's size, and never the API key (the trigger resolves the
connection itself). In the triggerer it:

1. resolves the connection before anything is sent (``MarkerTrigger._connection_failed``: failing,
   the worker runs the batch itself);
2. loads the per-item ledger (``batch.items.ItemLedger`` over ``durable.batch_store.BatchKV``, the
   Airflow Variables the worker reads too; fails closed) and the raw inputs, and re-plans the items
   that are not bought yet with the same ``BatchPlanner`` the operator used (free reads, in a
   thread: the hooks' reads block);
3. runs the same ``batch.BatchRunner`` the worker runs, with the hook's ``async_client`` (the
   triggerer's per-loop shared pool, which has no connection cap): per item the run policy decides
   (bought: reused; started with a run id: re-attached (Dify); Docify started without an outcome:
   unknown, never re-sent; never sent: sent), the admission limiter finds the server's cap from
   429s; one log line per item at its end and a progress line every ``progress_every`` seconds;
4. fires one event: ``{"status": "batch_done", "counts", "stopped", "open", "elapsed",
   "deferred_in_try"}`` (``open``: index -> [status, error] of the items left unknown or paused, which
   the ledger alone cannot tell apart). The task resumes in ``execute_complete`` and reports the items
   from the ledger and the result store, sending nothing (``BatchRunner(report_only=True)``).

If the trigger itself breaks (its connection, its store or its inputs cannot be read), it fires
``{"status": "trigger_failed", ...}`` and the worker finishes the batch on the same ledger, never
re-sending what it says was sent. A triggerer that restarts re-creates the trigger from its kwargs:
it loads the ledger and goes on as above (nothing is re-sent that the ledger says was sent).
``deadline`` (the try's ``execution_timeout`` as a wall-clock time) is the trigger's own: it sends
nothing from ``SEND_MARGIN`` seconds before it, and ``FIRE_MARGIN`` seconds before it closes its
streams and fires ``{"status": "timed_out"}``; the task resumes, stops the runs left going and reports
every item (``operators.batch_timeout``). So the task's timeout path never reads a ledger that a
trigger still sending could change under it (a run sent then, its row overwritten by the task's,
would be sent again by a retry). Airflow's own deferral timeout stays as the backstop, for a
triggerer that is gone or late: its resume takes the same path, and the trigger had stopped sending.

Cancelled (a triggerer shutting down, or the deferral's ``execution_timeout``) it closes its streams
and stops nothing (another triggerer re-attaches; at the timeout the resumed task stops the runs:
``operators.batch_timeout``); killed (the task cleared or marked failed while deferred: ``on_kill``) it stops every
Dify run it has a task id for, as the single-run Dify trigger does.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import TriggerEvent

from docify_provider.triggers.base import MarkerTrigger, trigger_failed
from docify_provider.triggers.batch_plans import PLANNERS, BatchInputs, BatchPlanner

_CLASSPATH = "docify_provider.triggers.batch.BatchTrigger"
#: Errors kept per item in the event's ``open`` map (the full error is in the trigger's log).
OPEN_ERROR_CHARS = 300
#: Seconds before ``deadline`` from which nothing is sent, and at which the trigger fires ``timed_out``:
#: room for the clocks of the worker (which set the deadline) and the triggerer to differ.
SEND_MARGIN = 5.0
FIRE_MARGIN = 1.0


def batch_results(kv: Any, key: str, results_url: str | None) -> Any:
    """A batch's result store: per-item files beside ``results_to`` when given, else chunks of ``kv``."""
    from docify_provider.durable.batch_store import ChunkedResults, ObjectResults

    if results_url:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectResults(ObjectStoragePath(f"{results_url}.items"))
    return ChunkedResults(kv, key)


class BatchTrigger(MarkerTrigger):
    """Run a batch's items from the triggerer (module docstring).

    :param backend: ``docify``, ``dify`` or ``dify_openapi`` (``triggers.batch_plans.PLANNERS``).
    :param conn_id: the backend's connection (resolved here; the key never travels in kwargs).
    :param options: the backend's request fields (``additional_info``; ``files``, ``workflow_id``; ``app``).
    :param count: the number of items. :param batch_key: the ledger's key prefix (the operator's).
    :param results_url: ``results_to`` as a URL (results beside it), or None (results in Variables).
    :param deadline: when the try's ``execution_timeout`` ends (``time.time()``), or None.
    """

    marker_key = "docify_batch"  # unused: a batch's guard is its per-item ledger, not one marker
    log_label = "Batch trigger"

    def __init__(
        self,
        *,
        backend: str,
        conn_id: str,
        count: int,
        batch_key: str,
        options: Mapping[str, Any] | None = None,
        user: str | None = None,
        results_url: str | None = None,
        max_concurrency: int = 8,
        progress_every: float = 5.0,
        validate: bool = True,
        allow_resubmit: bool = False,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        if backend not in PLANNERS:
            raise ValueError(f"backend must be one of {sorted(PLANNERS)}, got {backend!r}")
        self.backend = backend
        self.conn_id = conn_id
        self.count = int(count)
        self.batch_key = batch_key
        self.options = dict(options or {})
        self.user = user
        self.results_url = results_url
        self.max_concurrency = int(max_concurrency)
        self.progress_every = float(progress_every)
        self.validate = validate
        self.allow_resubmit = allow_resubmit
        self.deadline = None if deadline is None else float(deadline)
        self._set_identity(dag_id, task_id, run_id, map_index, try_number)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _CLASSPATH,
            {
                "backend": self.backend,
                "conn_id": self.conn_id,
                "count": self.count,
                "batch_key": self.batch_key,
                "options": self.options,
                "user": self.user,
                "results_url": self.results_url,
                "max_concurrency": self.max_concurrency,
                "progress_every": self.progress_every,
                "validate": self.validate,
                "allow_resubmit": self.allow_resubmit,
                "deadline": self.deadline,
                **self._identity_kwargs(),
            },
        )

    # -- pieces ---------------------------------------------------------------------------------

    def _hook(self) -> Any:
        hook = self.__dict__.get("_hook_made")
        if hook is None:
            hook = self.__dict__["_hook_made"] = PLANNERS[self.backend].make_hook(self.conn_id)
        return hook

    def _store(self) -> Any:
        """The batch's ``BatchKV`` (Variables of this task instance), read even on try 1: a restarted
        trigger must see what the trigger before it wrote."""
        from docify_provider.durable.batch_store import BatchKV, VariableKV

        ident = self._identity()
        if ident is None:
            raise LookupError("the trigger names no task instance, so it cannot find the batch's state")
        return BatchKV(VariableKV(types.SimpleNamespace(**ident)))

    def _plan(self, planner: BatchPlanner, raw: Sequence[Mapping[str, Any]], ledger: Any) -> list[Any]:
        """The items not bought yet, planned as the operator planned them (it checked them all already);
        bought ones are reused, never uploaded or sent again, so not planned either."""
        planner.read_app()
        bought = {index for index in range(len(raw)) if (ledger.row(index) or {}).get("state") == "b"}
        return [None if index in bought else planner.plan(item) for index, item in enumerate(raw)]

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield await self._batch()

    async def _batch(self) -> TriggerEvent:
        from asgiref.sync import sync_to_async

        from docify_provider.batch import BatchRunner, ItemLedger

        hook = self._hook()
        # ``sent`` None: an earlier trigger of this batch may have sent items; the worker reads the ledger.
        failed = await self._connection_failed(hook, sent=None)  # type: ignore[arg-type]
        if failed is not None:
            return failed
        try:
            kv = self._store()
            ledger = ItemLedger(
                kv, batch_results(kv, self.batch_key, self.results_url), key=self.batch_key, try_number=self.try_number
            )
            await ledger.load(self.count)  # fails closed: nothing is sent without it
            raw = await BatchInputs(kv, self.batch_key).read(self.count)
            planner = PLANNERS[self.backend](hook, validate=self.validate, options=self.options)
            plans = await sync_to_async(self._plan, thread_sensitive=False)(planner, raw, ledger)
            backend = planner.backend()
        except Exception as exc:
            self.log.error(
                "Batch trigger cannot start (%s: %s); the task resumes on the worker, which finishes the batch on "
                "the same ledger",
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return self._fire(trigger_failed(exc, sent=None))
        self.__dict__["_ledger"], self.__dict__["_backend"] = ledger, backend
        state = ledger.counts()
        self.log.info(
            "Batch of %d document(s) in the triggerer, at most %d run(s) at once, for user %s (%s) from %s: "
            "%d bought, %d sent earlier, %d failed earlier",
            self.count,
            self.max_concurrency,
            self.user,
            self.backend,
            kv.where,
            state["bought"],
            state["sent"],
            state["failed"],
        )
        runner = BatchRunner(
            backend,
            hook.async_client,
            ledger,
            max_concurrency=self.max_concurrency,
            user=self.user,
            progress=lambda progress: self.log.info("Batch progress: %s", progress.line()),
            progress_every=self.progress_every,
            allow_resubmit=self.allow_resubmit,
            send_until=None if self.deadline is None else self.deadline - SEND_MARGIN,
            logger=self.log,
        )
        try:
            if self.deadline is None:
                result = await runner.run(plans)
            else:
                result = await asyncio.wait_for(runner.run(plans), max(0.0, self.deadline - FIRE_MARGIN - time.time()))
        except asyncio.TimeoutError:  # the deadline came with runs going: their streams are closed
            return self._timed_out()
        except asyncio.CancelledError:
            going = sum(1 for i in range(self.count) if (ledger.row(i) or {}).get("state") == "s")
            self.log.warning(
                "Batch trigger cancelled with %d item(s) sent and not settled; the streams were closed, no run was "
                "stopped: a trigger re-created from this one re-attaches to Dify runs by id and reports Docify "
                "runs as unknown, and sends the items never sent (at execution_timeout the resumed task stops them)",
                going,
            )
            raise
        except Exception as exc:
            self.log.exception("Batch trigger failed; the task resumes on the worker, which finishes the batch")
            return self._fire(trigger_failed(exc, sent=None))
        if runner.cut_off:  # items were left unsent because sending had stopped: the try's time is up
            return self._timed_out()
        open_items = {
            str(item["index"]): [item["status"], str(item.get("error") or "")[:OPEN_ERROR_CHARS]]
            for item in result.items
            if item["status"] in ("unknown", "paused")
        }
        return self._fire(
            {
                "status": "batch_done",
                "counts": result.counts,
                "stopped": result.stopped,
                "open": open_items,
                "elapsed": round(result.elapsed, 3),
            }
        )

    def _timed_out(self) -> TriggerEvent:
        """The try's ``execution_timeout`` is (all but) here: the task resumes to stop the runs left going
        and report every item (``operators.batch_timeout``)."""
        self.log.warning(
            "Batch trigger at execution_timeout: sending stopped %gs before it; the streams are closed and the "
            "task resumes to stop the runs left going and report every item",
            SEND_MARGIN,
        )
        return self._fire({"status": "timed_out", "message": "execution_timeout"})

    async def on_kill(self) -> None:
        """The task was cleared or marked failed while deferred: stop every Dify run the ledger names a task
        for (its run left going would be billed for nothing), and say so (``batch.stopping``, the rule a
        timed-out batch uses too). Docify runs cannot be stopped. The rows stay: a trigger re-created
        from this one re-attaches to the stopped runs and reports them failed."""
        from docify_provider.batch.stopping import stop_unsettled

        ledger, backend = self.__dict__.get("_ledger"), self.__dict__.get("_backend")
        if ledger is None or backend is None:
            self.log.warning("Batch trigger killed before it sent anything: nothing to stop")
            return
        await stop_unsettled(
            ledger,
            backend,
            self._hook().async_client,
            count=self.count,
            user=self.user,
            log=self.log,
            why="Batch trigger killed",
            settle=False,
        )


__all__ = ["BatchTrigger", "batch_results"]
