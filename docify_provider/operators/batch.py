"""What every backend's batch operator shares: many documents in one task, each bought once (issue 20).

``DocifyBatchScenarioOperator``, ``DifyBatchWorkflowOperator`` and ``DifyBatchAppOperator`` are thin
classes over ``BatchOperatorBase``; each adds its hook, connection id and request options. How a
backend's items are checked and run is its ``triggers.batch_plans`` planner, which the batch trigger
uses too. The flow, the same for all three:

1. ``inputs`` (a list of input dicts, or an XComArg resolving to one) and every output target are
   checked, then **every item** is checked against the app or scenario (one read of its parameters)
   before anything is uploaded or sent: one error names each bad item and parameter.
2. The items go through ``batch.BatchRunner`` (the run policy per item, the admission limiter that
   finds the server's cap from 429s, at most ``max_concurrency`` runs at once) with the per-item
   ledger in Airflow Variables (``durable.batch_store``): each item's intent is durable before its
   request is sent. Files are uploaded per item just before it takes a run slot. With
   ``deferrable=True`` (the default) the runner runs in the triggerer: one ``triggers.batch.BatchTrigger``
   holds every stream of the batch and the task resumes to report the items from the ledger
   (``operators.batch_deferred``); with ``deferrable=False`` it runs on the worker.
3. The result: ``items`` in input order (``status``, the run id - Docify's ``session_id``, Dify's
   ``workflow_run_id`` -, ``outputs``, ``error``) and ``counts``, written to ``results_to`` as JSON
   Lines when given, pushed as the XCom **before** ``allowed_failures`` decides whether the task fails
   (downstream tasks and people see the items either way), with one asset event per batch.

A retry (or a cleared task) reads the ledger: bought items are reused, items that failed or were
never sent are sent, a Dify item left running is re-attached by its run id, and a Docify item whose
outcome is unknown is reported, never re-sent (``allow_resubmit`` opts in, at the risk of paying twice).

At ``execution_timeout`` (deferred or on the worker) the batch stops its unsettled Dify runs, reports
every item, pushes the XCom, writes ``results_to`` and fails with ``BatchTimeoutError``
(``operators.batch_timeout``); a stopped item is failed, so a retry sends it again (a new run: Dify
showed the stopped one over), and a run not shown over is re-attached, never sent again.

The money rules do not depend on where the runner runs: the trigger drives the same runner and
ledger, a restarted triggerer re-creates the trigger (which reads the ledger as a retry does), and a
trigger that breaks leaves the rest of the batch to the worker, on the same ledger.

This module is imported when DAG files are parsed: only ``airflow.sdk`` pieces at module level.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AssetAlias, BaseOperator

from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import context_ti, ctx, open_output_target, with_asset_alias
from docify_provider.operators.fail_fast import fails_fast

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.batch import BatchResult, ItemLedger
    from docify_provider.batch.backends import BatchBackend
    from docify_provider.triggers.batch_plans import BatchPlanner

#: Above this many items the XCom's ``items`` go in chunks (``items_<n>`` keys of ``XCOM_CHUNK`` items).
XCOM_ITEMS_INLINE = 1000
XCOM_CHUNK = 500
#: Above this many items without ``results_to`` the operator warns: results belong in object storage.
RESULTS_IN_VARIABLES_WARN = 2000


class BatchFailedError(RuntimeError):
    """More items failed (or ended unknown, paused or unsent) than ``allowed_failures`` allows.

    Not permanent: a retry sends the failed and unsent items again (and only them). The XCom with
    every item was pushed before this was raised.
    """

    def __init__(self, message: str, counts: Mapping[str, int]) -> None:
        super().__init__(message)
        self.counts = dict(counts)


class BatchTimeoutError(BatchFailedError):
    """The batch met ``execution_timeout``: its unsettled runs were stopped and every item reported, the
    XCom pushed and ``results_to`` written before this was raised (``operators.batch_timeout``).

    Retried like any failure: a retry sends only the failed (stopped ones included) and unsent items.
    """


def failures_allowed(allowed: int | float, total: int) -> int:
    """``allowed_failures`` as a count: an int as is, a float a fraction of ``total`` (rounded down)."""
    if isinstance(allowed, float):
        return int(allowed * total + 1e-9)
    return int(allowed)


class BatchOperatorBase(BaseOperator):
    """Run many documents through one backend in one task (module docstring); not for direct use.

    :param inputs: a list of input dicts, one per document, or an XComArg resolving to one; each is
        what the backend's single-run operator takes as ``inputs`` (files as paths, storage URLs,
        uploads...). (templated)
    :param user: the end user of every run; default the connection's ``default_user`` extra, else
        ``airflow:<dag_id>.<task_id>``. (templated)
    :param max_concurrency: at most this many runs at once; the limiter goes lower (and back up) when
        the server answers 429 "not started" (its own cap).
    :param allowed_failures: how many items may fail (or end unknown, paused or unsent) with the task
        still succeeding: an int count, or a float fraction of the items (``0.05``). Default 0.
    :param results_to: object-storage URL (``s3://...``, ``file:///...``) of a JSON Lines file, one
        line per item in input order; each bought item's result is also kept beside it
        (``<results_to>.items/<index>.json``) until then. Template it per DAG run
        (``.../{{ run_id }}.jsonl``): a fixed URL is overwritten by the next run. (templated)
    :param attachments_to: where to store the files each item's run produced (local folder,
        ``ObjectStoragePath`` or storage URL), one folder per item:
        ``<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/<index>/<safe name>``; each item's
        ``files`` then name their ``path``. (templated)
    :param deferrable: run the items in the triggerer (one trigger for the whole batch; no worker slot
        waits), the default; False runs them on the worker. The inputs must be JSON to defer (else
        the batch runs on the worker, logged).
    :param progress_every: seconds between progress log lines (done / running / waiting / failed,
        documents per hour, time left).
    :param validate: check every item against the app or scenario before anything is uploaded or sent.
    :param force_rerun: buy every item again, even those an earlier try bought.
    :param allow_resubmit: send items whose earlier request may have started a run that cannot be
        followed (Docify; a Dify run whose id never arrived): risk of paying twice.
    :param emit_asset_events: one asset event per batch for the ``results_to`` file, through
        ``AssetAlias(asset_alias)`` (extra: the counts, ``succeeded``, ``failed``...).
    """

    #: Prefix of the batch's ledger keys (``<key>:<shard>``, results ``<key>:r<chunk>``).
    batch_key: ClassVar[str]
    #: Name of the ``AssetAlias`` of the batch's asset event unless ``asset_alias`` is given.
    default_asset_alias: ClassVar[str]

    template_fields: Sequence[str] = ("inputs", "user", "results_to", "attachments_to")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}
    hook: Any

    def __init__(
        self,
        *,
        inputs: Any,
        user: str | None = None,
        max_concurrency: int = 8,
        allowed_failures: int | float = 0,
        results_to: Any = None,
        attachments_to: Any = None,
        deferrable: bool = True,
        progress_every: float = 5.0,
        validate: bool = True,
        force_rerun: bool = False,
        allow_resubmit: bool = False,
        emit_asset_events: bool = False,
        asset_alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of runs, at least 1; got {max_concurrency!r}")
        if isinstance(allowed_failures, bool) or not isinstance(allowed_failures, (int, float)):
            raise ValueError(f"allowed_failures must be a count (int) or a fraction (float); got {allowed_failures!r}")
        if allowed_failures < 0 or (isinstance(allowed_failures, float) and allowed_failures > 1):
            raise ValueError(f"allowed_failures must be a count >= 0 or a fraction from 0 to 1; got {allowed_failures}")
        if not progress_every or progress_every <= 0:
            raise ValueError(f"progress_every must be a positive number of seconds; got {progress_every!r}")
        asset_alias = asset_alias or self.default_asset_alias
        super().__init__(**with_asset_alias(kwargs, emit_asset_events, asset_alias))
        self.inputs = inputs
        self.user = user
        self.max_concurrency = max_concurrency
        self.allowed_failures = allowed_failures
        self.results_to = results_to
        self.attachments_to = attachments_to
        self.deferrable = deferrable
        self.progress_every = float(progress_every)
        self.validate = validate
        self.force_rerun = force_rerun
        self.allow_resubmit = allow_resubmit
        self.emit_asset_events = emit_asset_events
        self.asset_alias = asset_alias

    # -- what each backend adds -----------------------------------------------------------------

    #: The backend's name in ``triggers.batch_plans.PLANNERS`` (its checks, plans and calls).
    batch_backend: ClassVar[str]

    def _conn_id(self) -> str:
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        """The backend's request fields (small, no secret: they travel in the trigger's kwargs)."""
        return {}

    @property
    def _planner(self) -> BatchPlanner:
        """The backend's checks, plans and calls, shared with the trigger (made once per task process)."""
        planner = self.__dict__.get("_planner_made")
        if planner is None:
            from docify_provider.triggers.batch_plans import PLANNERS

            planner = PLANNERS[self.batch_backend](self.hook, validate=self.validate, options=self._options())
            self.__dict__["_planner_made"] = planner
        return planner

    def _error_root(self) -> type[ProviderError]:
        return self._planner.error_root()

    def _read_app(self) -> None:
        self._planner.read_app()

    def _plan(self, inputs: Mapping[str, Any]) -> Any:
        return self._planner.plan(inputs)

    def _backend(self) -> BatchBackend:
        return self._planner.backend()

    # -- the flow -------------------------------------------------------------------------------

    @fails_fast
    def execute(self, context: Context) -> Any:
        items = self._items()
        for param in ("results_to", "attachments_to"):
            if getattr(self, param):
                open_output_target(param, getattr(self, param), self._error_root())
        return self._settle(context, items, defer=self.deferrable)

    def _settle(self, context: Context, items: list[Mapping[str, Any]], *, defer: bool, resumed: bool = False) -> Any:
        """Load the ledger (fail closed), check every item not bought, then defer to the batch trigger
        (``defer``) or run the items on the worker; ``resumed``: after a deferral (the trigger failed)."""
        try:
            self.hook.config  # noqa: B018 - resolved here, not inside the event loop (durable.batch_store)
            user = resolve_user(self, self.hook)
            ledger = self._ledger(context, len(items), resumed=resumed)
            asyncio.run(ledger.load(len(items)))  # fails closed (LedgerError): nothing is sent
            plans = self._plan_all(items, skip=self._bought(ledger, len(items)))
            if defer and items:
                from docify_provider.operators.batch_deferred import defer_batch

                defer_batch(self, context, ledger, items, user)  # raises TaskDeferred, unless inputs are not JSON
            result = self._run_until_timeout(context, ledger, plans, user)
            if self.attachments_to:
                self._store_attachments(context, result)
        finally:
            self.hook.close()
        return self._finish(context, result)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """The batch trigger is done: report every item from the ledger, sending nothing (``batch_deferred``)."""
        from docify_provider.operators.batch_deferred import complete_batch

        event = dict(event or {})
        if event.get("status") == "timed_out":  # the trigger met its deadline: it stopped sending, then fired
            from docify_provider.operators.batch_timeout import time_out

            time_out(self, context)
        return complete_batch(self, context, event)

    @fails_fast
    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """A trigger that crashed (``__fail__``, not its timeout) leaves the batch to the worker, on the same
        ledger; its timeout (``execution_timeout`` while deferred) stops the batch's unsettled runs, reports
        every item and fails the task (``operators.batch_timeout``)."""
        from docify_provider.operators.base import TRIGGER_FAIL, failure_cause, is_trigger_timeout

        kwargs = next_kwargs or {}
        if next_method == TRIGGER_FAIL and is_trigger_timeout(kwargs.get("error")):
            from docify_provider.operators.batch_timeout import time_out

            time_out(self, context)
        if next_method == TRIGGER_FAIL:
            why = failure_cause(kwargs.get("error"), kwargs.get("traceback"))
            event = {"status": "trigger_failed", "message": why}
            return self.execute_complete(context, event)
        return super().resume_execution(next_method, next_kwargs, context)

    def _items(self) -> list[Mapping[str, Any]]:
        """``inputs`` as a list of mappings, or a ``TypeError`` naming the parameter and the item."""
        value = self.inputs
        if isinstance(value, (Mapping, str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(
                f"inputs must be a list of input dicts (one per document) or an XComArg resolving to one; "
                f"got {type(value).__name__}. Nothing was uploaded or run."
            )
        bad = [f"inputs[{i}] is {type(item).__name__}" for i, item in enumerate(value) if not isinstance(item, Mapping)]
        if bad:
            raise TypeError(f"every item of inputs must be a dict of inputs: {'; '.join(bad[:10])}. Nothing was run.")
        return list(value)

    def _bought(self, ledger: ItemLedger, count: int) -> set[int]:
        """Items an earlier try bought: reused, never uploaded or sent again, so not checked again either
        (their file sources may be gone by now, as a single-run retry that reuses its result reads none)."""
        from docify_provider.batch.items import BOUGHT

        if self.force_rerun:
            return set()
        return {index for index in range(count) if (ledger.row(index) or {}).get("state") == BOUGHT}

    def _plan_all(self, items: Sequence[Mapping[str, Any]], *, skip: set[int]) -> list[Any]:
        """Every item checked before anything is uploaded or sent; one error naming each bad item.

        ``skip``: items bought by an earlier try (None in their place: the runner reuses them).
        """
        from docify_provider._core.errors import InputError, error_class

        self._read_app()
        plans: list[Any] = []
        problems: list[str] = []
        for index, item in enumerate(items):
            if index in skip:
                plans.append(None)
                continue
            try:
                plans.append(self._plan(item))
            except InputError as exc:
                problems.extend(f"item {index}: {problem}" for problem in exc.problems)
        if problems:
            raise error_class(self._error_root(), InputError)(
                [*problems, f"Nothing was uploaded or run ({len(items)} item(s) in the batch)."]
            )
        if skip:
            self.log.info("%d item(s) bought by an earlier try are reused: not checked or uploaded again", len(skip))
        return plans

    def _ledger(self, context: Context, count: int, *, resumed: bool = False) -> ItemLedger:
        """This batch's per-item ledger over its Airflow stores (``durable.batch_store``); ``resumed``:
        after a deferral, when even try 1 finds what its trigger wrote."""
        from docify_provider.batch import ItemLedger
        from docify_provider.durable.batch_store import BatchKV

        self._kv = kv = BatchKV.for_task(ctx(context))
        if resumed:
            kv.first_try = False
        ti = context_ti(context)
        return ItemLedger(kv, self._results(kv, count), key=self.batch_key, try_number=ti.try_number)

    def _run(self, ledger: ItemLedger, plans: list[Any], user: str) -> BatchResult:
        from docify_provider.batch import BatchRunner

        runner = BatchRunner(
            self._backend(),
            self.hook.async_client,
            ledger,
            max_concurrency=self.max_concurrency,
            user=user,
            progress=lambda progress: self.log.info("Batch progress: %s", progress.line()),
            progress_every=self.progress_every,
            force_rerun=self.force_rerun,
            allow_resubmit=self.allow_resubmit,
        )
        self.log.info(
            "Batch of %d document(s), at most %d run(s) at once, for user %s; item state in %s",
            len(plans),
            self.max_concurrency,
            user,
            self._kv.where,
        )
        return asyncio.run(runner.run(plans))

    def _run_until_timeout(self, context: Context, ledger: ItemLedger, plans: list[Any], user: str) -> BatchResult:
        """``_run``; ``execution_timeout`` (``AirflowTaskTimeout``, raised inside the runner's loop, which is
        cancelled) stops the unsettled runs, reports every item and fails (``operators.batch_timeout``)."""
        from docify_provider.operators.base import is_task_timeout

        try:
            return self._run(ledger, plans, user)
        except BaseException as exc:
            if not is_task_timeout(exc):
                raise
            from docify_provider.operators.batch_timeout import time_out

            ledger.forget_loop()  # the runner's loop is closed; stopping and reporting run in a new one
            time_out(self, context, ledger=ledger, user=user)

    def _results(self, kv: Any, count: int) -> Any:
        from docify_provider.triggers.batch import batch_results

        if not self.results_to and count > RESULTS_IN_VARIABLES_WARN:
            self.log.warning(
                "%d documents and no results_to: their results are kept in Airflow Variables until the task "
                "succeeds. Give results_to (object storage) for batches this big.",
                count,
            )
        return batch_results(kv, self.batch_key, self._results_url() if self.results_to else None)

    def _store_attachments(self, context: Context, result: BatchResult) -> None:
        """Download each succeeded item's files into its own folder (reused items' too: post-processing).

        An item whose files cannot be stored is failed (its run stays bought in the ledger, so a retry
        stores them without buying again); the others go on.
        """
        import os
        from typing import cast

        from docify_provider._core.files import safe_file_name
        from docify_provider.operators.base import RunOperatorBase

        # The single-run operators' folder (``<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]``),
        # computed by their own code: it reads only the operator's hook, ``attachments_to`` and ids.
        folder = cast("Any", RunOperatorBase)._attachment_folder(self, context)
        for item in result.items:
            if item["status"] != "succeeded" or not item.get("files"):
                continue
            used: set[str] = set()
            try:
                for file in item["files"]:
                    name = safe_file_name(file["file_name"] or str(file["file_url"]).rsplit("/", 1)[-1])
                    stem, dot, ext = name.rpartition(".")
                    counter = 1
                    while name.lower() in used:
                        counter += 1
                        name = f"{stem}-{counter}.{ext}" if dot else f"{ext}-{counter}"
                    used.add(name.lower())
                    index = str(item["index"])
                    if isinstance(folder, str):
                        destination: Any = os.path.join(folder, index, name)
                    else:
                        destination = folder / index / name
                    file["path"] = str(self.hook.download_file(file, destination))
            except Exception as exc:
                self.log.warning("Item %s: its attachments could not be stored: %s", item["index"], exc)
                item["status"] = "failed"
                item["error"] = (
                    f"bought, but its attachments could not be stored ({type(exc).__name__}: {exc}); a retry "
                    "stores them without buying the run again"
                )
                result.counts["succeeded"] -= 1
                result.counts["failed"] += 1
        stored = sum(1 for item in result.items for file in item.get("files") or [] if file.get("path"))
        self.log.info("Stored %d attachment(s) under %s", stored, folder)

    # -- the result -----------------------------------------------------------------------------

    def _finish(self, context: Context, result: BatchResult, *, timed_out: str | None = None) -> dict[str, Any]:
        """Log, push the XCom, write ``results_to``, then fail when too many items did not succeed, the
        ledger stopped the batch, or it met ``execution_timeout`` (``timed_out``: the error's message)."""
        counts = dict(result.counts)
        failures = sum(counts.get(status, 0) for status in ("failed", "unknown", "paused", "not_sent"))
        allowed = failures_allowed(self.allowed_failures, counts.get("total", len(result.items)))
        bought = counts.get("succeeded", 0) - counts.get("reused", 0)
        report: dict[str, Any] = {
            "counts": counts,
            "results_to": self._results_url() if self.results_to else None,
            "elapsed_s": round(result.elapsed, 3),
            # documents bought by this try per hour (reused ones cost nothing and took no time)
            "per_hour": round(bought * 3600 / result.elapsed) if result.elapsed > 0 else None,
        }
        self.log.info(
            "Batch done: %s succeeded, %s failed, %s unknown, %s paused, %s not sent (%s reused, %s turned away "
            "by 429) in %.1fs",
            *(counts.get(k, 0) for k in ("succeeded", "failed", "unknown", "paused", "not_sent", "reused")),
            counts.get("turned_away", 0),
            result.elapsed,
        )
        xcom = self._xcom(context, report, result.items)
        ok = failures <= allowed and not result.stopped and not timed_out
        try:
            if self.results_to and result.items:
                self._write_results(result.items)
        except Exception:
            context_ti(context).xcom_push(key="return_value", value=xcom)
            raise  # the items stay in the ledger and per-item files: a retry writes the file again, buys nothing
        if self.emit_asset_events and self.results_to and result.items:
            self._emit_batch_event(context, counts)
        elif self.emit_asset_events and result.items:
            self.log.info("emit_asset_events=True, but without results_to the batch has no file to name: no event")
        if not ok:
            context_ti(context).xcom_push(key="return_value", value=xcom)
            if timed_out:
                raise BatchTimeoutError(timed_out, counts)
            why = result.stopped or f"{failures} item(s) did not succeed; allowed_failures allows {allowed}"
            raise BatchFailedError(
                f"Batch failed: {why}. Every item is in this task's XCom; a retry sends only the failed and unsent "
                "items (items bought are reused, Dify runs left going are re-attached).",
                counts,
            )
        self.log.info("Batch state: %s", asyncio.run(self._kv.settle()))
        return xcom

    def _xcom(self, context: Context, report: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        """The return value; over ``XCOM_ITEMS_INLINE`` items, ``items`` go in chunks pushed as ``items_<n>``."""
        if len(items) <= XCOM_ITEMS_INLINE:
            return {"items": items, **report}
        ti = context_ti(context)
        keys = []
        for start in range(0, len(items), XCOM_CHUNK):
            key = f"items_{start // XCOM_CHUNK}"
            ti.xcom_push(key=key, value=items[start : start + XCOM_CHUNK])
            keys.append(key)
        self.log.info("%d items: pushed as XComs %s ... %s (%d items each)", len(items), keys[0], keys[-1], XCOM_CHUNK)
        return {"items": None, "item_keys": keys, **report}

    def _results_url(self) -> str:
        """``results_to`` as a URL (a plain local path becomes ``file://``)."""
        import os

        url = str(self.results_to)
        return url if "://" in url else f"file://{os.path.abspath(url)}"

    @staticmethod
    def _storage_path(url: str) -> Any:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectStoragePath(url)

    def _write_results(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Every item as one JSON line, in input order, at ``results_to`` (replaced as a whole)."""
        path = self._storage_path(self._results_url())
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for item in items:
                fh.write(json.dumps(item, default=str, ensure_ascii=False) + "\n")
        self.log.info("Wrote %d item(s) as JSON Lines to %s", len(items), self._results_url())

    def _emit_batch_event(self, context: Context, counts: Mapping[str, int]) -> None:
        """One asset event for the batch: the ``results_to`` file, through ``AssetAlias(asset_alias)``."""
        from pathlib import Path

        from airflow.providers.common.compat.sdk import Asset

        events = ctx(context).get("outlet_events")
        if events is None:  # pragma: no cover - Airflow always provides it
            self.log.warning("No outlet_events in the context; the batch's asset event is not emitted")
            return
        url = self._results_url()
        uri = Path(url[len("file://") :]).resolve().as_uri() if url.startswith("file://") else url
        # Flat: Airflow 3.0 hashes an event's extra values, and a nested dict fails the task's state update.
        events[AssetAlias(name=self.asset_alias)].add(Asset(uri=uri), extra={k: int(v) for k, v in counts.items()})
        self.log.info("Asset event for %s through alias %r", uri, self.asset_alias)


__all__ = ["BatchFailedError", "BatchOperatorBase", "BatchTimeoutError", "failures_allowed"]
