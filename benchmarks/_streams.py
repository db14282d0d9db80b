"""Load harness for many concurrent Docify or Dify streams: a fault plan, an emulator process, a triggerer-like loop.

The plan's ``backend`` (:data:`BACKENDS`) picks the emulator (``DocifyEmulator`` with one load
scenario per stream length, or ``DifyEmulator`` whose keys run the built-in ``long`` app with
inputs making one event per ``event_interval``, see :func:`dify_inputs`), the trigger
(``DocifyStreamTrigger`` / ``DifyWorkflowTrigger``, each as its stream operator defers it) and the
connection type (``docify`` / ``dify``, whose base URL ends in ``/v1``). Faults: Docify only.

Used by ``bench_concurrent_streams.py``, ``bench_workers_freed.py`` and ``tests/docify/test_load.py``.

* :class:`Plan`: N streams, each with its own API key and connection (so the emulator's per-key
  counters say exactly how often each stream's run was sent and started), a stream length, and an
  optional injected fault.
* :class:`_stream_emulator.EmulatorProcess`: ``python benchmarks/_streams.py --emulator PLAN`` in a
  child process, so that its threads, memory and CPU are not the client's (in its own module: it is
  the other process's side).
* :func:`drive`: what a triggerer does with deferred tasks: every stream's trigger
  is built from the operator's kwargs, serialised and re-created from its classpath, and its
  ``run()`` async generator iterated in its own asyncio task of ONE event loop (with the
  triggerer's per-trigger log context and greenback portal), all started at once, under an overall
  deadline after which whatever is left is cancelled and reported as hung.
* :func:`account` (``_accounting.py``): every stream ended as its fault says it must (success, or the typed error),
  exactly one trigger event each, and the emulator saw each run sent once and started at most once.

Stood in for outside a triggerer: the runner's channel to its supervisor (``SUPERVISOR_COMMS``),
through which a trigger's XCom calls (its restart marker) and secret masking go, and which only
exists inside Airflow. :class:`_triggerer_channel.TriggererChannel` answers them in memory, taking
many requests at once as Airflow 3.3's triggerer channel does; every stream's marker starts as the
operator leaves it before deferring ("deferred"). Everything else in ``run()`` is the production
path, Airflow's XCom calls included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _accounting import EXPECTED, Accounting, account, accounting_table
from _common import cpu_seconds, proc_status_kb, raise_nofile_limit, reset_peak_rss
from _stream_emulator import DIFY_PACED_EVENTS, dify_emulator, dify_inputs, docify_emulator, serve_emulator
from _triggerer_channel import TriggererChannel, installed

#: Fault kinds of the load mix, in the order they are dealt to the faulty streams.
FAULT_KINDS = ("drop_mid_stream", "error_event", "end_without_complete", "status_503", "malformed_event")

LOAD_DAG_ID = "docify_load"


# -- the plan ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """One stream of the load: its key, connection, length in events, and injected fault."""

    index: int
    key: str
    conn_id: str
    events: int
    fault: str | None = None

    @property
    def scenario_code(self) -> str:
        return f"LOAD_{self.events}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The streams of one load run, plus a warm-up stream run before measuring."""

    streams: tuple[StreamSpec, ...]
    warmup: StreamSpec
    #: ``"docify"`` or ``"dify"`` (:data:`BACKENDS`): which emulator, trigger and connection type.
    backend: str = "docify"

    def to_json(self) -> str:
        return json.dumps(
            {
                "streams": [dataclasses.asdict(s) for s in self.streams],
                "warmup": dataclasses.asdict(self.warmup),
                "backend": self.backend,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        streams = tuple(StreamSpec(**s) for s in data["streams"])
        return cls(streams, StreamSpec(**data["warmup"]), data.get("backend", "docify"))

    @property
    def spec(self) -> Backend:
        return BACKENDS[self.backend]

    def faults(self) -> Counter[str | None]:
        return Counter(s.fault for s in self.streams)


def build_plan(
    streams: int,
    *,
    fault_rate: float = 0.0,
    min_events: int = 11,
    max_events: int = 21,
    seed: int = 7,
    backend: str = "docify",
    shared: bool = False,
) -> Plan:
    """``streams`` streams of ``min_events``..``max_events`` events (the terminal one included), spread
    evenly; ``round(streams * fault_rate)`` of them, picked at random with ``seed``, get the kinds of
    :data:`FAULT_KINDS` in turn (Docify only).

    Each stream has its own key and connection, unless ``shared``: then the streams without a fault
    share one connection per stream length, as a deployment has one per scenario (a fault is bound
    to a key, so a faulty stream keeps its own).
    """
    spec = BACKENDS[backend]
    if min_events < spec.min_events or max_events < min_events:
        raise ValueError(f"need {spec.min_events} <= min_events <= max_events ({spec.shape})")
    if fault_rate and backend != "docify":
        raise ValueError("injected faults are planned for the Docify backend only")
    spread = max_events - min_events + 1
    faulty = sorted(random.Random(seed).sample(range(streams), round(streams * fault_rate)))
    kinds = {index: FAULT_KINDS[n % len(FAULT_KINDS)] for n, index in enumerate(faulty)}

    def name(i: int) -> str:
        return f"shared-{min_events + i % spread:03d}" if shared and i not in kinds else f"{i:05d}"

    specs = tuple(
        StreamSpec(
            index=i,
            key=f"{spec.key_prefix}load-key-{name(i)}",
            conn_id=f"{backend}_load_{name(i)}",
            events=min_events + i % spread,
            fault=kinds.get(i),
        )
        for i in range(streams)
    )
    warmup = StreamSpec(
        index=-1, key=f"{spec.key_prefix}load-key-warmup", conn_id=f"{backend}_load_warmup", events=min_events
    )
    return Plan(specs, warmup, backend)


def events_for_seconds(seconds: float, interval: float) -> int:
    """Events of a stream lasting about ``seconds`` with ``interval`` seconds between events."""
    return max(5, round(seconds / interval) + 1)


def connection_env(plan: Plan, base_url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables (JSON form) for every stream of ``plan``, as a deployment would set them
    (``base_url`` as the emulator gives it: ending in ``/docify`` for Docify, in ``/v1`` for Dify)."""
    env = {}
    for spec in {s.conn_id: s for s in (*plan.streams, plan.warmup)}.values():
        env[f"AIRFLOW_CONN_{spec.conn_id.upper()}"] = json.dumps(
            {"conn_type": plan.backend, "host": base_url, "password": spec.key}
        )
    return env


# -- the triggerer-like loop ------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """How one stream's trigger ended."""

    index: int
    events: int = 0
    status: str | None = None
    error_type: str | None = None
    message: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    raised: str | None = None
    hung: bool = False
    seconds: float = 0.0
    #: Seconds from the moment every stream was started (their tasks created) to this one's end.
    ended_at: float = 0.0


def _docify_trigger(spec: StreamSpec) -> Any:
    """``DocifyStreamTrigger`` as ``DocifyStreamScenarioOperator`` defers it."""
    from docify_provider.triggers.docify import DocifyStreamTrigger

    return DocifyStreamTrigger(
        inputs={"text": {"text": f"load stream {spec.index}"}},
        docify_conn_id=spec.conn_id,
        user=f"load-{spec.index}",
        **_identity(spec),
    )


def _dify_trigger(spec: StreamSpec) -> Any:
    """``DifyWorkflowTrigger`` as ``DifyStreamWorkflowOperator`` defers it (validated wire inputs)."""
    from docify_provider.triggers.dify import DifyWorkflowTrigger

    return DifyWorkflowTrigger(
        inputs=dify_inputs(spec.events),
        dify_conn_id=spec.conn_id,
        user=f"load-{spec.index}",
        files=None,
        workflow_id=None,
        allow_resubmit=False,
        workflow_run_id=None,
        dify_task_id=None,
        try_number=1,
        **_identity(spec),
    )


def _identity(spec: StreamSpec) -> dict[str, Any]:
    return {"dag_id": LOAD_DAG_ID, "task_id": "stream", "run_id": "load", "map_index": spec.index}


def _docify_ids(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(run id, session id) of a Docify trigger event."""
    result = payload.get("result")
    return (result.get("runId") if isinstance(result, dict) else payload.get("run_id")), payload.get("session_id")


def _dify_ids(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(workflow run id, task id) of a Dify trigger event."""
    return payload.get("workflow_run_id"), payload.get("task_id")


@dataclasses.dataclass(frozen=True)
class Backend:
    """What differs between the backends in a load run; everything else is shared."""

    name: str
    key_prefix: str
    min_events: int
    shape: str
    emulator: Any  # (plan, event_interval, ping_interval) -> emulator
    trigger: Any  # (spec) -> the trigger as the operator defers it
    ids: Any  # (event payload) -> (run id, session / task id)


BACKENDS: dict[str, Backend] = {
    "docify": Backend(
        "Docify", "", 5, "START, 2 PREPARE, >= 1 TEXT, COMPLETE", docify_emulator, _docify_trigger, _docify_ids
    ),
    "dify": Backend(
        "Dify",
        "app-",
        DIFY_PACED_EVENTS + 2,
        "the long app: 7 node/run events, >= 1 text_chunk, workflow_finished",
        dify_emulator,
        _dify_trigger,
        _dify_ids,
    ),
}


def make_trigger(spec: StreamSpec, backend: str = "docify") -> Any:
    """The trigger a triggerer would run for ``spec``: built with the operator's kwargs, serialised,
    and re-created from its classpath and (JSON round-tripped) kwargs."""
    deferred = BACKENDS[backend].trigger(spec)
    classpath, kwargs = deferred.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def run_trigger(spec: StreamSpec, backend: str = "docify", *, load_started: float | None = None) -> Outcome:
    """Iterate one trigger's ``run()`` to its end, as ``TriggerRunner.run_trigger`` does."""
    import structlog

    try:
        import greenback  # Airflow 3.1+'s triggerer gives each trigger a portal for sync calls
    except ImportError:  # Airflow 3.0's has none
        greenback = None

    outcome = Outcome(index=spec.index)
    trigger = make_trigger(spec, backend)
    structlog.contextvars.bind_contextvars(trigger_id=spec.index, dag_id=LOAD_DAG_ID, map_index=spec.index)
    if greenback is not None:
        await greenback.ensure_portal()
    started = time.monotonic()
    try:
        async for event in trigger.run():
            outcome.events += 1
            payload = event.payload
            outcome.status = payload.get("status")
            outcome.error_type = payload.get("error_type")
            outcome.message = str(payload.get("message") or "")[:300] or None
            outcome.run_id, outcome.session_id = BACKENDS[backend].ids(payload)
    except Exception as exc:  # a trigger that raises is an unaccounted run, reported as such
        outcome.raised = f"{type(exc).__name__}: {exc}"[:300]
    ended = time.monotonic()
    outcome.seconds = ended - started
    outcome.ended_at = ended - (started if load_started is None else load_started)
    return outcome


class ResourceSampler:
    """Peak resident memory and CPU of this process from ``start`` on (VmHWM reset at start)."""

    def __init__(self) -> None:
        self.baseline_kb = 0
        self.busiest_second = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.baseline_kb = proc_status_kb("VmRSS")
        reset_peak_rss()
        self._cpu0, self._wall0 = cpu_seconds(), time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        cpu, wall = self._cpu0, self._wall0
        while True:
            await asyncio.sleep(1.0)
            cpu_now, wall_now = cpu_seconds(), time.monotonic()
            self.busiest_second = max(self.busiest_second, (cpu_now - cpu) / (wall_now - wall))
            cpu, wall = cpu_now, wall_now

    async def stop(self) -> dict[str, float]:
        cpu, wall = cpu_seconds() - self._cpu0, time.monotonic() - self._wall0
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        peak = proc_status_kb("VmHWM")
        return {
            "baseline_mb": self.baseline_kb / 1024,
            "peak_mb": peak / 1024,
            "peak_above_baseline_mb": (peak - self.baseline_kb) / 1024,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "cpu_cores_avg": cpu / wall if wall else 0.0,
            "cpu_cores_busiest_second": self.busiest_second,
        }


async def drive(plan: Plan, *, deadline: float, measure: bool = False) -> tuple[list[Outcome], dict[str, float]]:
    """Run every stream's trigger concurrently in this event loop; cancel what is left at ``deadline``.

    The connections must already be in the environment (:func:`connection_env`). The triggers talk
    to a :class:`TriggererChannel` holding each stream's "deferred" marker. The warm-up stream runs
    first (imports, TLS context, first-use caches), then all streams start at once. With
    ``measure``, peak memory and CPU of the load phase are returned as well.
    """
    with installed(TriggererChannel()) as channel:
        for spec in (plan.warmup, *plan.streams):  # as each operator leaves its marker before deferring
            trigger = make_trigger(spec, plan.backend)
            channel.seed(trigger.marker_key, trigger._unsent_marker(), trigger._identity())
        channel.bind()
        return await _drive(plan, deadline, measure)


async def _drive(plan: Plan, deadline: float, measure: bool) -> tuple[list[Outcome], dict[str, float]]:
    warm = await run_trigger(plan.warmup, plan.backend)
    if warm.status != "success":
        raise RuntimeError(f"the warm-up stream failed: {warm}")
    sampler = ResourceSampler()
    if measure:
        sampler.start()
    started = time.monotonic()
    tasks = {
        spec.index: asyncio.create_task(run_trigger(spec, plan.backend, load_started=started)) for spec in plan.streams
    }
    _, pending = await asyncio.wait(tasks.values(), timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    usage = await sampler.stop() if measure else {}
    outcomes = [
        Outcome(index=index, hung=True, seconds=deadline, ended_at=deadline) if task in pending else task.result()
        for index, task in tasks.items()
    ]
    return outcomes, usage


def drive_child(plan_path: str, base_url: str, deadline: float, log_path: str) -> None:
    """Body of the load child: log like a trigger runner (JSON lines to a channel), drive, print JSON."""
    raise_nofile_limit()
    with open(plan_path) as fh:
        plan = Plan.from_json(fh.read())
    os.environ.update(connection_env(plan, base_url))
    from airflow.sdk.log import configure_logging

    with open(log_path, "wb", buffering=0) as log_io:
        # As the triggerer's runner process does: JSON log lines, unbuffered, to its supervisor.
        try:
            configure_logging(json_output=True, output=log_io, sending_to_supervisor=True)
        except TypeError:  # Airflow 3.0 names JSON output "not pretty"
            configure_logging(enable_pretty_log=False, output=log_io, sending_to_supervisor=True)  # type: ignore[call-arg]
        outcomes, usage = asyncio.run(drive(plan, deadline=deadline, measure=True))
    with open(log_path, "rb") as fh:
        log_lines = sum(1 for _ in fh)
    print(json.dumps({"outcomes": [dataclasses.asdict(o) for o in outcomes], "usage": usage, "log_lines": log_lines}))


def run_load_child(
    plan: Plan, base_url: str, *, deadline: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """:func:`drive_child` in a fresh process (so the figures are its own); returns its JSON report."""
    with tempfile.TemporaryDirectory(prefix="docify-load-") as tmp:
        plan_path = os.path.join(tmp, "plan.json")
        with open(plan_path, "w") as fh:
            fh.write(plan.to_json())
        out = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--drive",
                plan_path,
                base_url,
                "--deadline",
                str(deadline),
                "--log-file",
                os.path.join(tmp, "triggers.log"),
            ],
            capture_output=True,
            text=True,
            timeout=deadline + 180,
            env={**os.environ, **(env or {})},
        )
    if out.returncode != 0:
        raise RuntimeError(f"the load process failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="child processes of the stream load benchmarks")
    parser.add_argument("--emulator", metavar="PLAN")
    parser.add_argument("--event-interval", type=float, default=1.0)
    parser.add_argument("--ping-interval", type=float, default=0.5)
    parser.add_argument("--drive", nargs=2, metavar=("PLAN", "BASE_URL"))
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--log-file", default=os.devnull)
    args = parser.parse_args(argv)
    if args.emulator:
        with open(args.emulator) as fh:
            plan = Plan.from_json(fh.read())
        serve_emulator(plan, event_interval=args.event_interval, ping_interval=args.ping_interval or None)
    elif args.drive:
        drive_child(args.drive[0], args.drive[1], args.deadline, args.log_file)
    else:
        parser.error("give --emulator or --drive")


__all__ = ["EXPECTED", "Accounting", "account", "accounting_table"]  # for the benchmarks and the load test

if __name__ == "__main__":
    main()
