"""``BatchRunner``: many items, each bought once, through one admission limiter. Async, no Airflow.

For each item, in order of the inputs, ``max_concurrency`` workers take the next one and ask the one
run policy (``durable.policy.decide``) what the item's ledger row (``items.ItemLedger``) allows:

* **reuse** a bought item's stored result (no request);
* **re-attach** to a run an earlier pass started (Dify: by run id; it counts as one in flight);
* **send** an item never sent (or settled without a result: turned away, failed): its files
  uploaded (``backend.prepare``, before the slot: an upload must not hold one), a slot from the
  limiter (``_core.admission``), the intent row written (fail closed), the run request, each run id
  recorded as it appears, the result stored before the row says bought. A 429 to the run request
  (``RunNotStartedError``) forgets the row and waits for a slot again: the only re-send;
* **unknown**: a run that may have started and cannot be followed (Docify, or no run id) is
  reported with what is known and never re-sent.

``send_until`` (a wall-clock time, ``time.time()``) is when sending stops: an item whose turn comes
later (a 429's wait included) is ``not_sent``, nothing uploaded for it. A deferred batch's trigger
stops sending a few seconds before ``execution_timeout``, so that no run request leaves while the
task's timeout path reads the ledger (``triggers.batch``).

A failed item is a result, not a crash: the batch goes on and the item's row is dropped, so a later
pass sends it again. A ledger that cannot be written stops the batch (items not yet sent are
``not_sent``), as the single-run ledger stops a try. ``run`` returns every item in input order with
``status`` (``succeeded``, ``failed``, ``unknown``, ``paused``, ``not_sent``), its run id (Docify:
``session_id``), ``outputs``, ``error`` and ``reused``, and the counts. A progress callback gets the
counts every ``progress_every`` seconds (``Progress.line()`` is the log line).

``report_only`` reads the same ledger through the same policy and sends nothing: what a deferred
batch's task does when its trigger is done (the trigger ran the items, the task reports them): a
bought item is succeeded (its result read from the result store), a failed row failed with its
error, a row left "sent" unknown or paused (as the trigger that ran it said, in ``reported``), an
item without a row not sent. One rule for an item's status, whether the pass sent it or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from docify_provider._core.admission import AdmissionLimiter, AdmissionState
from docify_provider._core.errors import LedgerError, ProviderError, RunNotStartedError
from docify_provider.batch.backends import BatchBackend, ItemPaused, Outcome
from docify_provider.batch.items import FAILED, ItemLedger
from docify_provider.durable.policy import Action, decide

log = logging.getLogger(__name__)

#: An item's status once the pass is over.
STATUSES = ("succeeded", "failed", "unknown", "paused", "not_sent")


@dataclasses.dataclass(frozen=True)
class Progress:
    """The batch's counts at one moment, for a log line and the final XCom."""

    total: int
    done: int
    running: int
    waiting: int
    failed: int
    unknown: int
    elapsed: float
    admission: AdmissionState

    @property
    def per_hour(self) -> float:
        """Items settled per hour in this pass so far."""
        return self.done * 3600.0 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        left = self.total - self.done
        return left * 3600.0 / self.per_hour if self.per_hour > 0 else None

    def line(self) -> str:
        left = self.seconds_left
        eta = "?" if left is None else f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f}s"
        return (
            f"{self.done}/{self.total} done, {self.running} running, {self.waiting} waiting, {self.failed} failed, "
            f"{self.unknown} unknown; {self.per_hour:,.0f} documents/h, {eta} left; {self.admission.describe()}"
        )


@dataclasses.dataclass
class BatchResult:
    """Every item in input order and the counts (``counts["succeeded"]``, ..., ``"reused"``, ``"turned_away"``)."""

    items: list[dict[str, Any]]
    counts: dict[str, int]
    elapsed: float
    stopped: str | None = None  # why the batch stopped sending (a ledger failure), if it did


class _Stop(Exception):
    """The ledger failed: send nothing more."""


class BatchRunner:
    """Run ``inputs`` through ``backend`` with ``client_factory()`` (an async context manager giving the
    backend's async client: a hook's ``async_client()``, or a client in tests) and ``ledger`` (loaded here).

    ``force_rerun`` / ``allow_resubmit`` are the single-run operators' flags, per item.
    """

    def __init__(
        self,
        backend: BatchBackend,
        client_factory: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
        ledger: ItemLedger,
        *,
        max_concurrency: int = 8,
        user: str | None = None,
        limiter: AdmissionLimiter | None = None,
        progress: Callable[[Progress], None] | None = None,
        progress_every: float = 5.0,
        force_rerun: bool = False,
        allow_resubmit: bool = False,
        report_only: bool = False,
        reported: Mapping[int, Sequence[Any]] | None = None,
        send_until: float | None = None,
        logger: Any = None,
    ) -> None:
        self.backend = backend
        self.client_factory = client_factory
        self.ledger = ledger
        self.max_concurrency = max_concurrency
        self.user = user
        self.limiter = limiter or AdmissionLimiter(max_concurrency)
        self.on_progress = progress
        self.progress_every = progress_every
        self.force_rerun = force_rerun
        self.allow_resubmit = allow_resubmit
        #: Send nothing: settle each item from the ledger (module docstring); ``reported``: index ->
        #: (status, error) of the items the sending pass left unknown or paused.
        self.report_only = report_only
        self.reported = {int(k): v for k, v in (reported or {}).items()}
        self.send_until = send_until
        #: Whether an item was left unsent because ``send_until`` had passed (a trigger's timeout).
        self.cut_off = False
        #: Where the per-item lines go (a trigger passes its own logger: its lines are the task's).
        self.log = logger or log
        self._items: list[dict[str, Any] | None] = []
        self._running = 0
        self._turned_away = 0
        self._stopped: str | None = None
        self._started = 0.0

    async def run(self, inputs: Sequence[Any]) -> BatchResult:
        """Every item settled or reported (module docstring); raises ``LedgerError`` only if the ledger
        cannot be read at all (then nothing was sent).

        ``inputs`` are what the caller checked up front, one per item: the backend's ``prepare``
        turns an item about to be sent into its wire inputs (uploads its files) before it takes a slot.
        """
        if self.ledger.loaded != len(inputs):
            await self.ledger.load(len(inputs))
        self._items = [None] * len(inputs)
        self._started = time.monotonic()
        queue = iter(range(len(inputs)))
        factory = contextlib.nullcontext if self.report_only else self.client_factory
        async with factory() as client:
            reporter = asyncio.create_task(self._report()) if self.on_progress else None
            try:
                workers = min(self.max_concurrency, len(inputs)) or 0
                await asyncio.gather(*(self._worker(client, inputs, queue) for _ in range(workers)))
            finally:
                await self.ledger.flush()  # deferred bought marks, also when the pass is cancelled
                if reporter is not None:
                    reporter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reporter
        if self.on_progress:
            self.on_progress(self.progress())
        items = [item or self._item(i, "not_sent", error=self._stopped) for i, item in enumerate(self._items)]
        counts = self._counts(items)
        io = self.ledger.io()
        counts.update(store_writes=io["store_writes"], store_reads=io["store_reads"])
        log.info(
            "Batch state: %d store write(s) (%d ledger, %d result), %d read(s) for %d item(s)",
            io["store_writes"], io["ledger_writes"], io["result_writes"], io["store_reads"], len(items),
        )  # fmt: skip
        return BatchResult(items, counts, time.monotonic() - self._started, self._stopped)

    # -- one item -------------------------------------------------------------------------------

    async def _worker(self, client: Any, inputs: Sequence[Any], queue: Any) -> None:
        for index in queue:
            if self._stopped:
                return
            began = time.monotonic()
            try:
                item = self._items[index] = await self._one(client, index, inputs[index])
            except _Stop:
                return
            if not self.report_only:  # the pass that ran the item said it already
                self._narrate(item, time.monotonic() - began)

    async def _one(self, client: Any, index: int, inputs: Any) -> dict[str, Any]:
        known = self.ledger.known(index, self.backend.policy)
        if self.report_only:  # a bought row is bought, a sent one stays what it is: nothing is re-decided
            decision = decide(known, self.backend.policy)
        else:
            decision = decide(
                known, self.backend.policy, force_rerun=self.force_rerun, allow_resubmit=self.allow_resubmit
            )
        if self.report_only and decision.action is not Action.REUSE:
            return self._reported(index, decision.message)
        if decision.action is Action.UNKNOWN:
            return self._item(index, "unknown", run_id=decision.run_id, error=decision.message)
        if decision.action is Action.REUSE:
            record = await self.ledger.result(index)
            if record is not None:
                row = self.ledger.row(index) or {}
                reused = not self.report_only or row.get("try") != self.ledger.try_number
                item = self._item(
                    index, "succeeded", run_id=decision.run_id, outputs=self.backend.outputs(record), reused=reused
                )
                return self._with_files(item, record)
            if self.report_only:
                return self._reported(index, f"item {index} was bought but its stored result cannot be read")
            if not (decision.run_id and self.backend.policy.can_reattach):
                why = f"item {index} was bought but its stored result cannot be read; it is not re-sent"
                return self._item(index, "unknown", run_id=decision.run_id, error=why)
            decision = dataclasses.replace(decision, action=Action.REATTACH)
        if decision.resubmit:
            self.log.warning("Item %s: %s", index, decision.message)
        if decision.action is Action.REATTACH:
            self.log.info("Item %s: %s", index, decision.message or f"re-attaching to run {decision.run_id}")
            return await self._follow(client, index, inputs, run_id=decision.run_id, task_id=decision.task_id)
        if self._too_late():
            return self._too_late_item(index)
        try:
            wire = await self.backend.prepare(client, inputs, user=self.user)
        except Exception as exc:  # nothing was sent: the item fails here, before it takes a slot
            error = f"{type(exc).__name__}: {exc}"
            await self.ledger.forget(index, error=f"not sent, its inputs could not be prepared: {error}")
            return self._item(index, "failed", error=f"not sent: {exc}", error_type=type(exc).__name__)
        return await self._follow(client, index, wire)

    async def _follow(
        self,
        client: Any,
        index: int,
        inputs: Mapping[str, Any],
        *,
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """Send item ``index`` (or re-attach to ``run_id``) in a limiter slot, sending again only when turned away."""
        while True:
            ticket = await self.limiter.acquire()
            self._running += 1
            not_started: RunNotStartedError | None = None
            try:
                if run_id is None:
                    if self._too_late():
                        return self._too_late_item(index)
                    try:
                        await self.ledger.intend(index)
                    except LedgerError as exc:
                        self._stopped = str(exc)
                        self.log.error("Batch stopped: %s", exc)
                        raise _Stop from exc
                return await self._read(client, index, inputs, run_id, task_id)
            except RunNotStartedError as exc:
                not_started = exc
                self._turned_away += 1
                await self.ledger.forget(index)
            finally:
                self._running -= 1
                delay = await self.limiter.release(
                    ticket, not_started=not_started is not None, retry_after=getattr(not_started, "retry_after", None)
                )
            self.log.info("Item %s turned away (429, not started); sent again after %.1fs at the latest", index, delay)

    async def _read(
        self, client: Any, index: int, inputs: Mapping[str, Any], run_id: str | None, task_id: str | None
    ) -> dict[str, Any]:
        backend = self.backend
        seen = run_id
        stream: AsyncIterator[Any]
        if run_id is None:
            stream = backend.send(client, inputs, user=self.user)
        else:
            stream = backend.reattach(client, run_id, task_id=task_id, user=self.user)
        outcome: Outcome | None = None
        try:
            async for event in stream:
                new_run, new_task = backend.ids(event)
                if (new_run and new_run != seen) or (new_task and new_task != task_id):
                    seen, task_id = new_run or seen, new_task or task_id
                    await self.ledger.started(index, seen, task_id)
                outcome = backend.outcome(event)
                if outcome is not None:
                    break
        except RunNotStartedError:
            raise
        except ItemPaused as paused:
            return self._item(index, "paused", run_id=paused.run_id or seen, error=str(paused))
        except ProviderError as exc:
            exc_run = getattr(exc, "run_id", None) or getattr(exc, "session_id", None) or seen
            if exc.run_settled():
                await self.ledger.forget(index, error=f"{type(exc).__name__}: {exc}", run_id=exc_run)
                return self._item(index, "failed", run_id=exc_run, error=str(exc), error_type=type(exc).__name__)
            if exc_run:
                await self.ledger.started(index, exc_run, task_id)
            return self._item(index, "unknown", run_id=exc_run, error=str(exc), error_type=type(exc).__name__)
        except Exception as exc:  # not the run's failure: the row stays, so the item is never re-sent blindly
            self.log.exception("Item %s: unexpected failure while following its run", index)
            return self._item(index, "unknown", run_id=seen, error=f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
        if outcome is None:
            why = f"the {backend.policy.label} stream ended without a result"
            return self._item(index, "unknown", run_id=seen, error=why)
        reattachable = self.backend.policy.can_reattach
        await self.ledger.bought(index, outcome.record, outcome.run_id or seen, reattachable=reattachable)
        item = self._item(index, "succeeded", run_id=outcome.run_id or seen, outputs=outcome.outputs)
        return self._with_files(item, outcome.record)

    def _reported(self, index: int, message: str) -> dict[str, Any]:
        """Report mode: what the ledger row of an item that is not bought says (module docstring)."""
        row = self.ledger.row(index)
        if row is None:
            return self._item(index, "not_sent", error=self._stopped)
        if row["state"] == FAILED:
            return self._item(index, "failed", run_id=row["run_id"], error=row.get("error"))
        status, error = [*(self.reported.get(index) or []), None, None][:2]
        if status not in ("paused", "unknown"):
            status = "unknown"
        if not error:
            run = f" ({self.backend.policy.id_noun} {row['run_id']})" if row["run_id"] else ""
            error = message or f"item {index} was sent{run}; its outcome was not recorded. It is not re-sent"
        return self._item(index, status, run_id=row["run_id"], error=error)

    def _with_files(self, item: dict[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        """``item`` with the ``files`` its run produced, when it produced any (the caller stores them)."""
        try:
            files = self.backend.files(record)
        except Exception:  # the result is bought and kept; only its attachment list is missing
            self.log.warning("Item %s: could not read the files of its result", item["index"], exc_info=True)
            files = []
        if files:
            item["files"] = files
        return item

    # -- results and progress -------------------------------------------------------------------

    def _narrate(self, item: Mapping[str, Any], seconds: float) -> None:
        """One line per item when it settles (not per event: thousands of streams would flood the log)."""
        run_id = item.get(self.backend.id_field)
        named = f" ({self.backend.policy.id_noun} {run_id})" if run_id else ""
        how = "reused" if item.get("reused") else item["status"]
        if item["status"] in ("succeeded", "paused"):
            self.log.info("Item %s %s%s in %.1fs", item["index"], how, named, seconds)
        else:
            self.log.warning("Item %s %s%s: %s", item["index"], how, named, item.get("error"))

    def _too_late(self) -> bool:
        return self.send_until is not None and time.time() >= self.send_until

    def _too_late_item(self, index: int) -> dict[str, Any]:
        """Sending stopped (``send_until``): the item is not sent, and says why."""
        self.cut_off = True
        why = "not sent: sending stopped before execution_timeout; a retry sends it"
        return self._item(index, "not_sent", error=why)

    def _item(
        self,
        index: int,
        status: str,
        *,
        run_id: str | None = None,
        outputs: Any = None,
        error: str | None = None,
        error_type: str | None = None,
        reused: bool = False,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "index": index,
            "status": status,
            self.backend.id_field: run_id,
            "outputs": outputs,
            "error": error,
            "reused": reused,
        }
        if error_type:
            item["error_type"] = error_type
        return item

    def _counts(self, items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for item in items:
            counts[item["status"]] += 1
        counts["reused"] = sum(1 for item in items if item.get("reused"))
        counts["turned_away"] = self._turned_away
        counts["total"] = len(items)
        return counts

    def progress(self) -> Progress:
        settled = [item for item in self._items if item is not None]
        state = self.limiter.state()
        return Progress(
            total=len(self._items),
            done=len(settled),
            running=self._running,
            waiting=len(self._items) - len(settled) - self._running,
            failed=sum(1 for item in settled if item["status"] == "failed"),
            unknown=sum(1 for item in settled if item["status"] == "unknown"),
            elapsed=time.monotonic() - self._started,
            admission=state,
        )

    async def _report(self) -> None:
        assert self.on_progress is not None
        while True:
            await asyncio.sleep(self.progress_every)
            self.on_progress(self.progress())


__all__ = ["STATUSES", "BatchResult", "BatchRunner", "Progress"]
