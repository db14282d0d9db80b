"""The per-item bought-once ledger of a batch: intent -> started(run id) -> bought, for thousands of items.

The single-run ledger (``durable.ledger.RunLedger``) keeps one record per task instance. A batch of
10,000 documents cannot keep one key per item (10,000 Execution API writes per transition) nor one
JSON value holding every result (Airflow's XCom and task-state values are meant to be small), so:

* item **states** live in shards of ``shard_size`` items, one key each (``<key>:<shard>``), as
  compact rows ``[state, run_id, task_id, sent_at or error, try]`` - about 100 bytes an item; items never
  sent have no row at all;
* item **results** (what a bought run returned) live in a separate ``ResultStore``, one entry per
  item (object storage, the XCom backend, or memory in tests); the shard row only says "bought".

Writes follow the single-run ledger's rules: the intent row is written **before** the request is
sent, and a failed write stops the item (``LedgerError``: nothing sent unguarded); the run ids and
the bought mark are best effort (logged), the result is stored before the row says "bought".
Concurrent writes to one shard are grouped: an item waiting for its intent to be durable rides on
the next write of its shard with every other change made meanwhile (a group commit), so a batch at
20 runs at once writes a shard a few times a second, not once per transition per item.

Fewer writes (``flush_every``): the **bought** mark of a backend that can re-attach (Dify) is not
written at once but with the next write of its shard (another item's intent, usually) or at the
latest ``flush_every`` seconds later, and at the end (``flush``, which the runner calls also when it
is cancelled). Why that is safe: the result is stored first and the row already holds the run id
(the started write is immediate), so a crash before the flush leaves an ``s`` row with a run id, which
the next pass re-attaches to and whose result it reads again: free, nothing sent. What stays
immediate, and why:

* the **intent** (money rule: fail closed, nothing sent unguarded);
* the **run id** (``started``): deferred, a crash would leave an ``s`` row without one, which no
  backend can follow: "unknown" (never re-sent, but its result lost to the batch);
* Docify's (and every backend's that cannot re-attach) **bought** mark: its ``s`` row is "unknown"
  after a crash. Deriving "bought" from a result found in the result store is not safe in general:
  ``force_rerun`` writes a new intent over an item whose earlier result is still stored, and a stored
  record does not say which run of the item it is; so the mark is written at once.

``io`` counts the store calls (shard writes and reads, result writes and reads) for the final counts.

Reading fails closed: a shard that cannot be read raises ``LedgerError`` ("unknown", never "nothing
sent"). What a row means is decided by the one run policy (``durable.policy``): ``known`` builds its
``Known`` per item.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from docify_provider._core.errors import LedgerError
from docify_provider.durable.ledger import now_iso
from docify_provider.durable.policy import Backend, Known

log = logging.getLogger(__name__)

#: Items per ledger shard. A shard write costs ~10 ms of CPU in the triggerer (its supervisor and the
#: Execution API's Variable write) whatever its size from 16 to 256 rows: what costs is the number of
#: writes, not their size. Smaller shards cut nothing and write more (a 2,000-item batch with 64: 20 %
#: more writes and CPU) and read more (a 10,000-item ledger: 157 Variables, not 40): see
#: ``benchmarks/bench_ledger_shards.py``. A ledger's shard size is part of its format (which key holds
#: which item): changing it needs the size recorded, so that a batch in flight is read as it was written.
SHARD_SIZE = 256

SENT = "s"
BOUGHT = "b"
#: Settled without a result (the run failed, or its inputs were refused): read as "never sent", so a
#: later pass sends it again, but the row keeps the error for the report.
FAILED = "f"


class KeyValue(Protocol):
    """Where shards live: JSON values by key (task_state_store, XCom, a Variable; memory in tests).

    ``get`` of a missing key is None; any exception is a failed read or write.
    """

    async def get(self, key: str) -> Any: ...
    async def set(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...


class ResultStore(Protocol):
    """Where each bought item's result lives (object storage, the XCom backend; memory in tests)."""

    async def put(self, index: int, record: Mapping[str, Any]) -> None: ...
    async def get(self, index: int) -> Mapping[str, Any] | None: ...


class MemoryKV:
    """A ``KeyValue`` in memory; ``fail_writes_after`` / ``fail_reads`` make it fail like a lost API server."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0
        self.fail_writes_after: int | None = None
        self.fail_reads = False

    async def get(self, key: str) -> Any:
        if self.fail_reads:
            raise ConnectionError("the store cannot be read")
        return self.values.get(key)

    async def set(self, key: str, value: Any) -> None:
        if self.fail_writes_after is not None and self.writes >= self.fail_writes_after:
            raise ConnectionError("the store cannot be written")
        self.writes += 1
        self.values[key] = json.loads(json.dumps(value))  # stored as JSON, as every real store does

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


class MemoryResults:
    """A ``ResultStore`` in memory."""

    def __init__(self) -> None:
        self.records: dict[int, Mapping[str, Any]] = {}

    async def put(self, index: int, record: Mapping[str, Any]) -> None:
        self.records[index] = record

    async def get(self, index: int) -> Mapping[str, Any] | None:
        return self.records.get(index)


class ItemLedger:
    """The ledger of one batch (module docstring): load it, then ``known`` / ``intend`` / ``started`` /
    ``bought`` / ``forget`` per item index.

    :param kv: where the shards live. :param results: where each bought result lives.
    :param key: the shards' key prefix (the operator's, e.g. ``docify_batch``).
    :param try_number: who writes (for messages: "try 2 started Dify run ...").
    """

    def __init__(
        self,
        kv: KeyValue,
        results: ResultStore,
        *,
        key: str = "batch",
        shard_size: int = SHARD_SIZE,
        try_number: int | None = None,
        flush_every: float = 1.0,
    ) -> None:
        self.kv = kv
        self.results = results
        self.key = key
        self.shard_size = shard_size
        self.try_number = try_number
        #: Seconds a deferred bought mark may wait for its shard's next write (0: written at once).
        self.flush_every = flush_every
        self._rows: dict[int, list[Any]] = {}
        self._version: dict[int, int] = {}  # shard -> changes made
        self._durable: dict[int, int] = {}  # shard -> changes written
        self._locks: dict[int, asyncio.Lock] = {}
        self._timers: dict[int, asyncio.Task[None]] = {}  # shard -> its pending deferred write
        self._unwritten_ids: set[int] = set()  # items whose run id is not durable yet (write going or failed)
        self._io = {"ledger_writes": 0, "ledger_reads": 0, "result_writes": 0, "result_reads": 0}
        #: The item count of the last ``load`` (a caller that loaded first spares the runner a second read).
        self.loaded: int | None = None

    def shard_key(self, shard: int) -> str:
        return f"{self.key}:{shard}"

    async def load(self, count: int) -> None:
        """Read every shard a batch of ``count`` items can have; ``LedgerError`` if one cannot be read."""
        self._rows.clear()
        self.loaded = None
        for shard in range((count + self.shard_size - 1) // self.shard_size):
            try:
                self._io["ledger_reads"] += 1
                value = await self.kv.get(self.shard_key(shard))
            except Exception as exc:
                raise LedgerError(
                    f"Cannot read the batch's item state ({self.shard_key(shard)}): {type(exc).__name__}: {exc}. "
                    "Which items an earlier try already sent or bought is unknown, so nothing is sent."
                ) from exc
            rows = value.get("items") if isinstance(value, Mapping) else None
            for index, row in (rows or {}).items():
                if isinstance(row, list) and row and row[0] in (SENT, BOUGHT, FAILED):
                    self._rows[int(index)] = list(row) + [None] * (5 - len(row))
        self.loaded = count

    def counts(self) -> dict[str, int]:
        """Rows by state: ``{"sent": n, "bought": m, "failed": k}`` (items without a row were never sent)."""
        states = [row[0] for row in self._rows.values()]
        return {"sent": states.count(SENT), "bought": states.count(BOUGHT), "failed": states.count(FAILED)}

    def io(self) -> dict[str, int]:
        """Store calls so far: ``ledger_writes`` / ``ledger_reads`` (shards), ``result_writes`` /
        ``result_reads`` (the result store), and ``store_writes`` / ``store_reads``, their sums."""
        io = dict(self._io)
        io["store_writes"] = io["ledger_writes"] + io["result_writes"]
        io["store_reads"] = io["ledger_reads"] + io["result_reads"]
        return io

    def row(self, index: int) -> dict[str, Any] | None:
        """Item ``index``'s row as a dict (``state``, ``run_id``, ``task_id``, ``at`` or ``error``, ``try``)."""
        row = self._rows.get(index)
        if row is None:
            return None
        state, run_id, task_id, at, try_number = row[:5]
        detail = "error" if state == FAILED else "at"
        return {"state": state, "run_id": run_id, "task_id": task_id, detail: at, "try": try_number}

    def known(self, index: int, backend: Backend) -> Known:
        """What the ledger says about item ``index``, for ``durable.policy.decide``."""
        row = self._rows.get(index)
        if row is None or row[0] == FAILED:
            return Known(sent=False)
        state, run_id, task_id, sent_at, try_number = row[:5]
        who = f"try {try_number}" if try_number is not None else "an earlier attempt"
        if state == BOUGHT:
            return Known(sent=True, result={"raw": None, "index": index}, run_id=run_id, who=who)
        return Known(sent=True, run_id=run_id, task_id=task_id, who=who, when=sent_at)

    # -- transitions ----------------------------------------------------------------------------

    async def intend(self, index: int) -> None:
        """Record that item ``index`` is about to be sent; ``LedgerError`` (send nothing) if it cannot be."""
        before = self._rows.get(index)
        self._rows[index] = [SENT, None, None, now_iso(), self.try_number]
        try:
            await self._commit(index)
        except Exception as exc:
            # Not sent: a later write of the shard must not carry an intent that never became a request.
            if before is None:
                self._rows.pop(index, None)
            else:
                self._rows[index] = before
            raise LedgerError(
                f"Cannot write the batch's item state ({self.shard_key(index // self.shard_size)}): "
                f"{type(exc).__name__}: {exc}. Without it a retry could not know that item {index} was sent, "
                "so it is not sent."
            ) from exc

    async def started(self, index: int, run_id: str | None, task_id: str | None = None) -> None:
        """Add the run ids the server gave to item ``index``'s row (best effort: the run is going)."""
        row = self._rows.get(index)
        if row is None or row[0] != SENT or (row[1] == run_id and (row[2] or not task_id)):
            return
        row[1] = run_id or row[1]
        row[2] = task_id or row[2]
        self._unwritten_ids.add(index)
        await self._best_effort(index, "its run id")

    async def bought(
        self, index: int, record: Mapping[str, Any], run_id: str | None = None, *, reattachable: bool = False
    ) -> None:
        """Keep item ``index``'s result (result store first), then mark its row bought.

        ``reattachable``: the backend can follow the run by its id (Dify), so the mark may wait for the
        shard's next write (module docstring) - if the row's run id is already durable; else it is
        written now.
        """
        try:
            self._io["result_writes"] += 1
            await self.results.put(index, record)
        except Exception:
            log.warning("Could not store the result of item %s; its row stays 'sent'", index, exc_info=True)
            return
        row = self._rows.get(index) or [SENT, None, None, None, self.try_number]
        durable_id = bool(row[1]) and row[1] == (run_id or row[1]) and index not in self._unwritten_ids
        self._rows[index] = [BOUGHT, run_id or row[1], row[2], row[3], self.try_number]
        if reattachable and durable_id and self.flush_every > 0:
            self._defer(index)
            return
        await self._best_effort(index, "that it was bought")

    async def forget(self, index: int, *, error: str | None = None, run_id: str | None = None) -> None:
        """Item ``index`` is settled without a result, so a later pass sends it again: turned away (no
        row), or failed (``error``: a ``FAILED`` row that keeps the error and run id for the report)."""
        if error is not None:
            self._rows[index] = [FAILED, run_id, None, error[:500], self.try_number]
        elif self._rows.pop(index, None) is None:
            return
        await self._best_effort(index, "that it is settled")

    async def result(self, index: int) -> Mapping[str, Any] | None:
        """The stored result of a bought item; None when it cannot be read (logged)."""
        try:
            self._io["result_reads"] += 1
            return await self.results.get(index)
        except Exception:
            log.warning("Could not read the stored result of item %s", index, exc_info=True)
            return None

    # -- writing ----------------------------------------------------------------------------------

    def forget_loop(self) -> None:
        """Drop the locks and timers of an event loop that is gone, so the ledger can be written from a new
        one: a worker's batch cut by ``execution_timeout`` (``AirflowTaskTimeout`` lands in the runner's loop,
        which is closed) is stopped and reported from a second loop. A lock the cut left held would refuse
        that loop's writes. The rows stay: the next write of a shard carries every change not durable yet."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._locks.clear()

    async def flush(self) -> None:
        """Write every deferred change now (the end of a pass, or its cancellation); best effort, logged."""
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            timer.cancel()
        for timer in timers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer
        for shard in sorted(self._version):  # also a shard whose timed write failed
            if self._durable.get(shard, 0) < self._version[shard]:
                await self._best_effort(shard * self.shard_size, "the deferred bought marks")

    # -- writing ----------------------------------------------------------------------------------

    def _defer(self, index: int) -> None:
        """Mark the change just made to ``index``'s shard as written by the shard's next write, or by a
        timer ``flush_every`` seconds from now (one timer per shard at a time)."""
        shard = index // self.shard_size
        self._version[shard] = self._version.get(shard, 0) + 1
        if shard not in self._timers:
            self._timers[shard] = asyncio.get_running_loop().create_task(self._flush_later(shard))

    async def _flush_later(self, shard: int) -> None:
        await asyncio.sleep(self.flush_every)
        self._timers.pop(shard, None)
        if self._durable.get(shard, 0) < self._version.get(shard, 0):
            await self._best_effort(shard * self.shard_size, "the deferred bought marks")

    async def _best_effort(self, index: int, what: str) -> None:
        try:
            await self._commit(index)
        except Exception:
            log.warning("Could not record %s for item %s", what, index, exc_info=True)

    async def _commit(self, index: int) -> None:
        """Make the change just made to ``index``'s shard durable, sharing a write with concurrent changes
        (and carrying every deferred change of the shard)."""
        shard = index // self.shard_size
        self._version[shard] = mine = self._version.get(shard, 0) + 1
        lock = self._locks.setdefault(shard, asyncio.Lock())
        async with lock:
            if self._durable.get(shard, 0) >= mine:
                return  # a write that started after this change already carried it
            target = self._version[shard]
            first = shard * self.shard_size
            # The shard's own indices, not every row of the batch: O(shard), however big the batch.
            span = range(first, first + self.shard_size)
            rows = {str(i): list(self._rows[i]) for i in span if i in self._rows}
            ids = {i for i in self._unwritten_ids if i in span}
            self._io["ledger_writes"] += 1
            await self.kv.set(self.shard_key(shard), {"items": rows})
            self._durable[shard] = target
            self._unwritten_ids -= ids


__all__ = [
    "BOUGHT",
    "FAILED",
    "SENT",
    "SHARD_SIZE",
    "ItemLedger",
    "KeyValue",
    "MemoryKV",
    "MemoryResults",
    "ResultStore",
]
