"""What a batch ledger's shard write costs by its size, and what a shard size costs a whole batch.

A batch's per-item ledger (``batch.items.ItemLedger``) keeps its rows in shards, one Airflow Variable
each; every write of a shard serialises all of its rows again. This measures, in one process and
with no deployment, the path a shard write takes in the triggerer: ``ItemLedger`` builds the shard,
``VariableKV.set`` (JSON, the task channel's thread), ``Variable.set``, the comms frame to the
supervisor and back (encoded and decoded as Airflow does, no socket), the supervisor's
``handle_put_variable`` and the in-process Execution API writing the Variable to a SQLite metadata
database (a throw-away ``AIRFLOW_HOME``), as the triggerer's own in-process API does.

1. **One write by size**: CPU seconds of one shard write of N rows (N = 16 ... 256), the median of
   ``--repeat`` writes after a warm-up.
2. **A whole batch by shard size**: ``--docs`` items through the real ``ItemLedger`` the way the
   batch runner drives it (intent, run id, deferred "bought" mark as for Dify; at most
   ``--concurrency`` items at once, each run ``--run-seconds`` long, compressed time), with the
   store path above: ledger writes, rows serialised and CPU seconds of the process, per shard size.
3. **Loading** ``--load-docs`` items' ledger: shard reads (Variables per batch) and CPU seconds.

    .venv/bin/python benchmarks/bench_ledger_shards.py [--docs 2000] [--sizes 256,128,64,32]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configure(home: Path) -> None:
    """A throw-away Airflow home with a migrated SQLite metadata database (before Airflow is imported)."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # Variables encrypted, as on a deployment (a Fernet key of its own).
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
    )
    from airflow import settings
    from airflow.utils import db

    settings.configure_vars()
    settings.reconfigure_orm()
    db.initdb()


class InProcessChannel:
    """``SUPERVISOR_COMMS`` of a trigger, without the socket: each message is framed, decoded and handled
    as the triggerer's supervisor does, through the in-process Execution API (as the triggerer's)."""

    def __init__(self) -> None:
        import msgspec
        from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
        from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor
        from airflow.sdk.api.client import Client
        from airflow.sdk.execution_time.comms import _RequestFrame, _ResponseFrame

        self.client = Client(base_url=None, token="", dry_run=True, transport=InProcessExecutionAPI().transport)
        self.client.base_url = "http://in-process.invalid./"  # type: ignore[assignment]
        self.decoder = TriggerRunnerSupervisor.decoder
        self.request_frame, self.response_frame = _RequestFrame, _ResponseFrame
        self.request_decoder = msgspec.msgpack.Decoder(_RequestFrame)
        self.response_decoder = msgspec.msgpack.Decoder(_ResponseFrame)

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time import request_handlers, task_runner
        from airflow.sdk.execution_time.comms import ErrorResponse, GetVariable, PutVariable, VariableResult

        sent = self.request_frame(id=1, body=msg.model_dump()).as_bytes()
        received = self.decoder.validate_python(self.request_decoder.decode(sent[4:]).body)
        # The supervisor is another process: no SUPERVISOR_COMMS there (the API's Variable model would
        # send to it again, in a loop).
        del task_runner.SUPERVISOR_COMMS  # type: ignore[attr-defined]
        try:
            if isinstance(received, PutVariable):
                answer, _ = request_handlers.handle_put_variable(self.client, received)
            elif isinstance(received, GetVariable):
                answer, _ = request_handlers.handle_get_variable(self.client, received)
            else:  # pragma: no cover - the ledger sends nothing else
                raise TypeError(type(received).__name__)
        finally:
            task_runner.SUPERVISOR_COMMS = self  # type: ignore[attr-defined]
        body = answer.model_dump() if answer is not None else None
        frame = self.response_decoder.decode(self.response_frame(id=1, body=body).as_bytes()[4:])
        if frame.body is None:
            return None
        if frame.body.get("type") == "VariableResult":
            return VariableResult.model_validate(frame.body)
        return ErrorResponse.model_validate(frame.body)


def store(batch: str) -> Any:
    """A ``BatchKV`` over Variables of one made-up task instance (reads go to the store: not try 1)."""
    from docify_provider.durable.batch_store import BatchKV, VariableKV

    ti = types.SimpleNamespace(dag_id="bench_dag", run_id=f"manual__{batch}", task_id="batch", map_index=-1)
    return BatchKV(VariableKV(ti))


def one_write(size: int, repeat: int, held: int = 0) -> float:
    """Median CPU seconds of one write of a shard of ``size`` rows (the ledger holding ``held`` rows in all)."""
    from docify_provider.batch import ItemLedger
    from docify_provider.batch.items import MemoryResults

    async def measure() -> float:
        ledger = ItemLedger(store(f"one-{size}-{held}"), MemoryResults(), key="dify_batch", shard_size=size)
        for index in range(max(size, held)):  # rows as the runner leaves them: sent, with run and task ids
            ledger._rows[index] = ["s", f"run-{index:032d}", f"task-{index:032d}", "2026-12-07T01:02:03Z", 1]
        times = []
        for attempt in range(repeat + 3):
            start = time.process_time()
            await ledger._commit(0)
            if attempt >= 3:  # warm-up writes first (the Variable created, the API's first calls)
                times.append(time.process_time() - start)
        return statistics.median(times)

    return asyncio.run(measure())


def batch(docs: int, size: int, concurrency: int, run_seconds: float, flush_every: float) -> dict[str, float]:
    """``docs`` items through the ledger (intent, run id, deferred bought mark) with shards of ``size``."""
    from docify_provider.batch import ItemLedger
    from docify_provider.batch.items import MemoryResults

    rows_written = 0

    async def run() -> ItemLedger:
        nonlocal rows_written
        kv = store(f"batch-{size}-{time.time_ns()}")
        ledger = ItemLedger(kv, MemoryResults(), key="dify_batch", shard_size=size, flush_every=flush_every)
        set_value = kv.set

        async def counted(key: str, value: Any) -> None:
            nonlocal rows_written
            rows_written += len(value["items"])
            await set_value(key, value)

        kv.set = counted  # type: ignore[method-assign]
        gate = asyncio.Semaphore(concurrency)

        async def item(index: int) -> None:
            async with gate:
                await ledger.intend(index)
                await asyncio.sleep(0.01)  # the request goes out; the stream names the run
                await ledger.started(index, f"run-{index:032d}", f"task-{index:032d}")
                await asyncio.sleep(run_seconds)
                await ledger.bought(index, {"index": index}, f"run-{index:032d}", reattachable=True)

        await asyncio.gather(*(item(i) for i in range(docs)))
        await ledger.flush()
        return ledger

    start, wall = time.process_time(), time.monotonic()
    ledger = asyncio.run(run())
    cpu, wall = time.process_time() - start, time.monotonic() - wall
    writes = ledger.io()["ledger_writes"]
    return {"writes": writes, "rows": rows_written, "cpu": cpu, "wall": wall}


def load(docs: int, size: int) -> dict[str, float]:
    """Load a ledger of ``docs`` items (every one with a row) with shards of ``size``: reads and CPU seconds."""
    from docify_provider.batch import ItemLedger
    from docify_provider.batch.items import MemoryResults

    async def run() -> dict[str, float]:
        kv = store(f"load-{size}-{time.time_ns()}")
        for shard in range((docs + size - 1) // size):
            rows = {
                str(i): ["b", f"run-{i:032d}", None, "2026-12-07T01:02:03Z", 1]
                for i in range(shard * size, min(docs, (shard + 1) * size))
            }
            await kv.set(f"dify_batch:{shard}", {"items": rows})
        ledger = ItemLedger(kv, MemoryResults(), key="dify_batch", shard_size=size)
        start, wall = time.process_time(), time.monotonic()
        await ledger.load(docs)
        assert ledger.counts()["bought"] == docs
        return {
            "reads": ledger.io()["ledger_reads"],
            "cpu": time.process_time() - start,
            "wall": time.monotonic() - wall,
        }

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--sizes", default="256,128,64,32")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--run-seconds", type=float, default=0.5, help="each run's length (compressed time)")
    parser.add_argument("--flush-every", type=float, default=0.1, help="the deferred bought mark's wait (compressed)")
    parser.add_argument("--load-docs", type=int, default=10000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    home = Path(tempfile.mkdtemp(prefix="bench-ledger-shards-"))
    atexit.register(shutil.rmtree, home, True)
    configure(home)
    from airflow.sdk.execution_time import task_runner

    task_runner.SUPERVISOR_COMMS = InProcessChannel()  # type: ignore[attr-defined]
    print(f"load average {os.getloadavg()[0]:.2f}")

    print("\n1. one shard write (median CPU ms):")
    for size in sorted({16, 32, 64, 128, 256, *sizes}):
        print(f"  {size:4d} rows: {one_write(size, args.repeat) * 1000:6.2f} ms")
    for held in (2000, 10000):
        print(f"   256 rows, {held} rows in the ledger: {one_write(256, args.repeat, held) * 1000:6.2f} ms")

    print(f"\n2. a batch of {args.docs} items, {args.concurrency} at once, runs of {args.run_seconds} s:")
    for size in sizes:
        got = batch(args.docs, size, args.concurrency, args.run_seconds, args.flush_every)
        print(
            f"  shards of {size:3d}: {got['writes']:5.0f} writes ({got['writes'] / args.docs:.2f}/item), "
            f"{got['rows'] / max(got['writes'], 1):5.1f} rows a write, CPU {got['cpu']:6.2f} s "
            f"({got['cpu'] / args.docs * 1000:.2f} ms/item), wall {got['wall']:.1f} s"
        )

    print(f"\n3. loading {args.load_docs} items:")
    for size in sizes:
        got = load(args.load_docs, size)
        print(
            f"  shards of {size:3d}: {got['reads']:4.0f} Variables read, "
            f"CPU {got['cpu']:.2f} s, wall {got['wall']:.2f} s"
        )


if __name__ == "__main__":
    main()
