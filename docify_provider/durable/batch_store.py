"""Where a batch's per-item ledger and results live in Airflow (the stores ``batch.items`` writes through).

``batch.items.ItemLedger`` keeps a batch's item states in shards of a key-value store and each
bought item's result in a result store; it imports no Airflow. These are its Airflow stores:

* ``VariableKV``: the shards (and result chunks) in **Airflow Variables**, one per key, named
  like the single-run fallback's (``durable.state.variable_key``, so ``airflow variables list``
  shows them per task instance). Variables, because they are the one store the worker *and* the
  triggerer can write (``task_state_store`` is not available in triggers; a try's XComs are wiped
  when the next try starts, which would lose the per-item guard across tries). Reads fail closed
  (``read_variable``: an unreadable Variable is an error, never "nothing sent").
* ``BatchKV``: ``VariableKV`` while the batch runs; on Airflow 3.3+ the successful task copies its
  keys into ``task_state_store`` (kept until the task's state is cleared, ``NEVER_EXPIRE``) and
  deletes the Variables, and a start reads the Variables first, then ``task_state_store``: so
  clearing a successful batch reuses what it bought, and Variables do not pile up. Before 3.3
  there is no such store: the Variables are deleted on success, as the single-run ledger's are
  (clearing then buys again) - but never while an item's outcome is unknown (a row that still
  guards a run that may have been billed stays until a human clears it).
* ``ObjectResults``: with ``results_to``, one JSON file per bought item under
  ``<results_to>.items/<index>.json`` through Airflow's ``ObjectStoragePath`` (any storage a
  provider registers; ``file://`` always): results never crowd the metadata database.
* ``ChunkedResults``: without ``results_to``, results in chunks of ``chunk`` items, one key each of
  the same ``BatchKV`` (a chunk is rewritten as its items are bought; the operator warns for big
  batches, whose results belong in object storage).
* ``KeyChunks``: how a chunked store of a batch names, reads and writes its chunks, for
  ``ChunkedResults`` and the write-once raw inputs of a deferred batch (``triggers.batch_plans.BatchInputs``):
  a chunk that is there but cannot be read is an error (unknown), never "no items".

Every call goes through ``asgiref``'s ``sync_to_async``: Variables and ``task_state_store`` on one
thread (the task's channel to its supervisor is one socket; ``thread_sensitive``), storage on the
default pool. So the event loop that holds the runs' streams never blocks on a write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from docify_provider.durable.state import _TaskStateStore, variable_key

log = logging.getLogger(__name__)

#: Each result chunk of ``ChunkedResults`` holds this many items.
RESULT_CHUNK = 32
#: States of a ledger row whose run may be going on or billed (``batch.items.SENT``): see ``BatchKV.settle``.
OPEN_STATE = "s"


def read_variable(key: str) -> str | None:
    """The raw value of Airflow Variable ``key``; None only when it does not exist. Fails closed.

    ``Variable.get(key, default=None)`` cannot serve a ledger: its Execution API backend reads any
    error answer (an API server hiccup included) as "not set" and the default comes back, so "cannot
    read" would look like "nothing was sent". The ``GetVariable`` message ``Variable.get`` sends is
    sent to the task's supervisor directly (Airflow 3.0 to 3.3 name it alike), and only
    ``VARIABLE_NOT_FOUND`` reads as missing. Anything else raises.
    """
    from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, VariableResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(GetVariable(key=key))
    if isinstance(answer, VariableResult):
        return answer.value
    if isinstance(answer, ErrorResponse) and str(getattr(answer.error, "value", answer.error)) == "VARIABLE_NOT_FOUND":
        return None
    detail = getattr(answer, "detail", None) or getattr(answer, "error", None) or type(answer).__name__
    raise RuntimeError(f"reading Variable {key!r} failed: {detail}")


async def _on_task_channel(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on the one thread that talks to the task's supervisor."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


class VariableKV:
    """JSON values by key in Airflow Variables of one task instance (module docstring)."""

    kind = "Airflow Variable"

    def __init__(self, ti: Any, *, description: str = "airflow-provider-docify batch ledger") -> None:
        map_index = getattr(ti, "map_index", -1)
        self.ident = (str(ti.dag_id), str(ti.run_id), str(ti.task_id), -1 if map_index is None else int(map_index))
        self.description = description

    def name(self, key: str) -> str:
        """The Variable that holds ``key`` (what a user deletes to clear it)."""
        return variable_key(*self.ident, key)

    async def get(self, key: str) -> Any:
        raw = await _on_task_channel(read_variable, self.name(key))
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        from airflow.sdk import Variable

        text = json.dumps(value, separators=(",", ":"))  # compact: ~100 bytes a row, 256 rows a shard
        await _on_task_channel(Variable.set, self.name(key), text, description=self.description)

    async def delete(self, key: str) -> None:
        from airflow.sdk import Variable

        await _on_task_channel(Variable.delete, self.name(key))


class TaskStateKV:
    """JSON values by key in ``task_state_store`` (Airflow 3.3+), kept until the task's state is cleared."""

    kind = "task_state_store"

    def __init__(self, store: Any) -> None:
        self.store = _TaskStateStore(store)

    async def get(self, key: str) -> Any:
        return await _on_task_channel(self.store.get, key)

    async def set(self, key: str, value: Any) -> None:
        await _on_task_channel(self.store.set, key, value)

    async def delete(self, key: str) -> None:
        await _on_task_channel(self.store.delete, key)


class BatchKV:
    """The ledger's store (module docstring): ``live`` Variables, ``archive`` (3.3+) after a success.

    It remembers every key it read or wrote and the value last seen, so ``settle`` moves them
    without reading anything again.
    """

    def __init__(self, live: VariableKV, archive: TaskStateKV | None = None, *, first_try: bool = False) -> None:
        self.live = live
        self.archive = archive
        #: Try 1 of a task instance cannot find anything stored (``durable.state``: Airflow never runs a
        #: try 1 twice, a cleared task's next try is 2 or more), so it reads nothing: 2 reads a shard saved.
        self.first_try = first_try
        self._seen: dict[str, Any] = {}

    @classmethod
    def for_task(cls, context: Mapping[str, Any]) -> BatchKV:
        ti = context.get("ti") or context.get("task_instance")
        store = context.get("task_state_store")
        first_try = str(getattr(ti, "try_number", "")) == "1"
        return cls(VariableKV(ti), TaskStateKV(store) if store is not None else None, first_try=first_try)

    @property
    def where(self) -> str:
        archive = f", {self.archive.kind} once the task succeeds" if self.archive else ""
        return f"Airflow Variables {self.live.name('<key>')}{archive}"

    async def get(self, key: str) -> Any:
        if self.first_try:
            return None
        value = await self.live.get(key)
        if value is None and self.archive is not None:
            value = await self.archive.get(key)
        if value is not None:
            self._seen[key] = value
        return value

    async def set(self, key: str, value: Any) -> None:
        await self.live.set(key, value)
        self._seen[key] = value

    async def delete(self, key: str) -> None:
        await self.live.delete(key)
        self._seen.pop(key, None)

    def open_rows(self) -> int:
        """Ledger rows seen in state ``sent`` (their run may be going on or billed)."""
        count = 0
        for value in self._seen.values():
            rows = value.get("items") if isinstance(value, Mapping) else None
            for row in (rows or {}).values():
                count += isinstance(row, list) and bool(row) and row[0] == OPEN_STATE
        return count

    async def settle(self) -> str:
        """The task succeeded: archive (3.3+) and delete the Variables; returns what was done, for the log.

        Without an archive, Variables that still hold an open row (an item whose outcome is
        unknown, or paused) are kept: deleting them would let a cleared task pay for it again.
        Nothing here fails the task: a Variable left behind is logged, never raised.
        """
        if not self._seen:
            return "no batch state to keep"
        if self.archive is None and self.open_rows():
            return (
                f"the batch state stays in Airflow Variables ({self.live.name('<key>')}): "
                f"{self.open_rows()} item(s) may have started a run whose outcome is unknown"
            )
        moved = 0
        for key, value in list(self._seen.items()):
            try:
                if self.archive is not None:
                    await self.archive.set(key, value)
                await self.live.delete(key)
                moved += 1
            except Exception:
                log.warning("Could not move batch state %r out of its Variable; it stays there", key, exc_info=True)
        where = f"kept in {self.archive.kind}" if self.archive is not None else "deleted (no task_state_store)"
        return f"{moved} batch state key(s) {where}"


class ObjectResults:
    """Each bought item's result as ``<folder>/<index>.json`` (``folder`` an ``ObjectStoragePath``)."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        self._made = False

    async def put(self, index: int, record: Mapping[str, Any]) -> None:
        await asyncio.to_thread(self._write, index, json.dumps(record))

    async def get(self, index: int) -> Mapping[str, Any] | None:
        return await asyncio.to_thread(self._read, index)

    def _write(self, index: int, text: str) -> None:
        if not self._made:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made = True
        with (self.folder / f"{index}.json").open("w") as fh:
            fh.write(text)

    def _read(self, index: int) -> Mapping[str, Any] | None:
        path = self.folder / f"{index}.json"
        if not path.exists():
            return None
        with path.open("r") as fh:
            value = json.loads(fh.read())
        return value if isinstance(value, Mapping) else None


class KeyChunks:
    """Items by index in chunks of ``size``, one key ``<prefix><n>`` each of ``kv`` (a ``BatchKV``), as
    ``{"items": <chunk>}``: the naming, reading and writing every chunked store of a batch shares.

    ``shape`` is what a chunk holds: ``list`` (items in order, written once: ``BatchInputs``) or
    ``dict`` (``str(index) -> item``, rewritten as items come: ``ChunkedResults``). A chunk that is
    missing reads as None; one that is there but is not a chunk raises ``LookupError``: what it held
    is unknown, never "no items" (a results chunk read as empty would be overwritten by the next put).
    """

    def __init__(self, kv: Any, prefix: str, size: int, *, shape: type[list[Any]] | type[dict[str, Any]]) -> None:
        self.kv = kv
        self.prefix = prefix
        self.size = size
        self.shape = shape

    def key(self, n: int) -> str:
        return f"{self.prefix}{n}"

    def of(self, index: int) -> int:
        """The chunk that holds item ``index``."""
        return index // self.size

    def count(self, items: int) -> int:
        """How many chunks ``items`` items take."""
        return (items + self.size - 1) // self.size

    async def read(self, n: int) -> Any:
        """Chunk ``n`` (a ``shape``), None when it does not exist; raises when it cannot be read as one."""
        value = await self.kv.get(self.key(n))
        if value is None:
            return None
        items = value.get("items") if isinstance(value, Mapping) else None
        if not isinstance(items, self.shape):
            raise LookupError(f"the batch's store holds something unreadable as {self.key(n)!r}")
        return items

    async def write(self, n: int, items: Any) -> None:
        await self.kv.set(self.key(n), {"items": items})

    async def delete(self, n: int) -> None:
        await self.kv.delete(self.key(n))


class ChunkedResults:
    """Results in chunks of ``chunk`` items, one key ``<key>:r<n>`` each of ``kv`` (a ``BatchKV``; ``KeyChunks``).

    A chunk is read once (then kept) and rewritten with every result added to it; concurrent puts
    to one chunk share a write, as the ledger's shards do. A chunk that cannot be read fails the put
    (the item's row stays "sent") and the get (logged by the ledger), never reads as empty.
    """

    def __init__(self, kv: Any, key: str, *, chunk: int = RESULT_CHUNK) -> None:
        self.chunks = KeyChunks(kv, f"{key}:r", chunk, shape=dict)
        self._chunks: dict[int, dict[str, Any]] = {}
        self._dirty: dict[int, int] = {}
        self._written: dict[int, int] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def _lock(self, n: int) -> asyncio.Lock:
        return self._locks.setdefault(n, asyncio.Lock())

    async def _load(self, n: int) -> dict[str, Any]:
        if n not in self._chunks:
            self._chunks[n] = dict(await self.chunks.read(n) or {})
        return self._chunks[n]

    async def put(self, index: int, record: Mapping[str, Any]) -> None:
        n = self.chunks.of(index)
        async with self._lock(n):
            chunk = await self._load(n)
        chunk[str(index)] = dict(record)
        self._dirty[n] = mine = self._dirty.get(n, 0) + 1
        async with self._lock(n):
            if self._written.get(n, 0) >= mine:
                return  # a write that started after this change already carried it
            target = self._dirty[n]
            await self.chunks.write(n, dict(chunk))
            self._written[n] = target

    async def get(self, index: int) -> Mapping[str, Any] | None:
        n = self.chunks.of(index)
        async with self._lock(n):
            chunk = await self._load(n)
        value = chunk.get(str(index))
        return value if isinstance(value, Mapping) else None


__all__ = ["BatchKV", "ChunkedResults", "KeyChunks", "ObjectResults", "TaskStateKV", "VariableKV", "read_variable"]
