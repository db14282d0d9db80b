"""Worker slots freed by deferral: N streams in ONE event loop vs N blocking worker processes.

Deferrable (the provider's way): N ``DocifyStreamTrigger`` runs held concurrently by one
triggerer-like asyncio loop in a child process (``_streams.run_load_child``: each trigger built
as the operator builds it, serialised and re-created, iterated with the triggerer's log context
and JSON logging). The emulator, in its own process, sends every stream one event per second
plus a keep-alive ping every ``--ping-interval`` seconds (default 15 s, a common SSE server
keep-alive; the emulator's own default of 0.5 s is a test setting that makes two of every three
chunks a ping, and ``--ping-interval 0.5`` reproduces it). Reported: peak resident memory
(VmHWM) of that process and its CPU (user + sys seconds / wall seconds = cores), for N = 100 and
N = 1000.

Blocking (the alternative): every stream holds a worker slot for its whole length. k worker-like
processes (default 4) are started at once, each having imported what a task process imports
(``airflow.sdk``, the task runner, the provider's operators and hook) and then iterating one
``DocifyHook.stream_scenario`` run against the same emulator. While all k are mid-stream their
memory is read: RSS, and through psutil USS (pages only that process has) and PSS (shared pages
divided among the sharers), so that shared library pages are not counted k times. N slots are
then estimated as N x the mean of the k processes: an extrapolation, not a measurement of N
processes (the machine could not hold 1,000 of them). It is a lower bound for a real worker slot,
which in Airflow 3 is a supervisor process plus the task process (only the latter is counted).

    .venv/bin/python benchmarks/bench_workers_freed.py [--streams 100,1000] [--seconds 30] [--workers 4]
        [--ping-interval 15] [--json]

Goal: 1,000 streams in one process under 300 MB resident and under one core.

The streams share ``--connections`` Docify connections (default 10: one connection per scenario,
as deployed). With ``--connections 0`` every stream has its own connection and key (the load
test's accounting per key); then each trigger's start costs more with every connection already
resolved: Airflow's secrets masker recompiles its pattern for every new secret (18 CPU seconds
for 1,000 keys) and httpx scans the environment (1,000 ``AIRFLOW_CONN_*`` variables) for proxies
once per client.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, machine_line
from _stream_emulator import EmulatorProcess
from _streams import (
    BACKENDS,
    Plan,
    account,
    build_plan,
    connection_env,
    events_for_seconds,
    run_load_child,
)

GOAL_STREAMS = 1000
GOAL_MB = 300.0
GOAL_CORES = 1.0
#: Keep-alive ping interval per backend when ``--ping-interval`` is not given.
DEFAULT_PING = {"docify": 15.0, "dify": 10.0}


# -- the blocking alternative: one worker-like process per stream ------------------------------------


def _docify_worker_stream(conn_id: str, events: int) -> tuple[Any, Any]:
    """(events, close) of one blocking Docify stream, logged as the operator logs it."""
    import logging

    from docify_provider.hooks.docify import DocifyHook
    from docify_provider.operators.docify import DocifyStreamScenarioOperator, log_stream_event

    del DocifyStreamScenarioOperator  # imported only as the task's DAG file would import it
    log = logging.getLogger("docify.bench.worker")
    hook = DocifyHook(docify_conn_id=conn_id)
    stream = hook.stream_scenario({"text": "worker stream"}, user="bench-worker")
    return (log_stream_event(log, event) for event in stream), hook.close


def _dify_worker_stream(conn_id: str, events: int) -> tuple[Any, Any]:
    """(events, close) of one blocking Dify stream (inputs validated against ``/parameters`` first,
    as the operator does), logged as the operator logs it."""
    import logging

    from _stream_emulator import dify_inputs

    from docify_provider.hooks.dify import DifyHook
    from docify_provider.operators.dify import DifyStreamWorkflowOperator, log_workflow_event

    del DifyStreamWorkflowOperator  # imported only as the task's DAG file would import it
    log = logging.getLogger("docify.bench.worker")
    hook = DifyHook(dify_conn_id=conn_id)
    stream = hook.stream_workflow(dify_inputs(events), user="bench-worker")
    return (log_workflow_event(log, event) for event in stream), hook.close


WORKER_STREAMS = {"docify": _docify_worker_stream, "dify": _dify_worker_stream}
WORKER_HOOK_CALLS = {"docify": "DocifyHook.stream_scenario", "dify": "DifyHook.stream_workflow"}


def worker_child(backend: str, conn_id: str, hold_after: int, events: int) -> None:
    """Body of one worker-like process: import what a task process imports, stream one run.

    Prints ``holding`` once ``hold_after`` events arrived (the parent then reads our memory), and a
    JSON line with the CPU and wall seconds of the stream at the end.
    """
    import airflow.sdk
    import airflow.sdk.execution_time.task_runner  # noqa: F401  - the task process's entry point

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    stream, close = WORKER_STREAMS[backend](conn_id, events)
    seen = 0
    for _ in stream:  # the operator logs every event; so does the trigger
        seen += 1
        if seen == hold_after:
            print("holding", flush=True)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(json.dumps({"events": seen, "cpu_seconds": cpu, "wall_seconds": time.monotonic() - wall0}), flush=True)


def stream_events(backend: str, seconds: float, event_interval: float) -> int:
    """Events of a stream of about ``seconds`` (at least the backend's shortest stream)."""
    return max(BACKENDS[backend].min_events, events_for_seconds(seconds, event_interval))


def measure_workers(
    backend: str, k: int, seconds: float, event_interval: float, home: str, ping_interval: float
) -> dict[str, Any]:
    """Start ``k`` worker-like processes at once; read their memory while all are mid-stream."""
    import psutil

    events = stream_events(backend, seconds, event_interval)
    plan = build_plan(k, min_events=events, max_events=events, backend=backend)
    hold_after = max(3, events // 3)
    with EmulatorProcess(plan, event_interval=event_interval, ping_interval=ping_interval) as emulator:
        env = {**os.environ, **connection_env(plan, emulator.base_url), "AIRFLOW_HOME": home}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    backend,
                    spec.conn_id,
                    str(hold_after),
                    str(events),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for spec in plan.streams
        ]
        holding = threading.Barrier(k + 1, timeout=seconds + 120)
        finals: dict[int, str] = {}

        def read(i: int, proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            told = False
            for line in proc.stdout:
                if line.strip() == "holding" and not told:
                    told = True
                    holding.wait()
                elif line.startswith("{"):
                    finals[i] = line
            if not told:  # died before holding: release the parent, which then reports the failure
                holding.abort()

        readers = [threading.Thread(target=read, args=(i, p), daemon=True) for i, p in enumerate(procs)]
        for t in readers:
            t.start()
        try:
            holding.wait()
        except threading.BrokenBarrierError:
            for p in procs:
                p.kill()
            errs = [p.communicate()[1][-2000:] for p in procs]
            raise RuntimeError("a worker process failed before mid-stream:\n" + "\n".join(errs)) from None
        memory = []
        for p in procs:
            info = psutil.Process(p.pid).memory_full_info()
            memory.append({"rss_mb": info.rss / 2**20, "uss_mb": info.uss / 2**20, "pss_mb": info.pss / 2**20})
        for p in procs:
            p.wait(seconds + 120)
        for t in readers:
            t.join(10)
    if any(p.returncode for p in procs) or len(finals) != k:
        raise RuntimeError(f"worker processes failed: return codes {[p.returncode for p in procs]}")
    runs = [json.loads(finals[i]) for i in range(k)]
    return {
        "k": k,
        "events_per_stream": events,
        "per_process": memory,
        "rss_mb": statistics.mean(m["rss_mb"] for m in memory),
        "uss_mb": statistics.mean(m["uss_mb"] for m in memory),
        "pss_mb": statistics.mean(m["pss_mb"] for m in memory),
        "cores_per_stream": statistics.mean(r["cpu_seconds"] / r["wall_seconds"] for r in runs),
    }


# -- the deferrable way: N streams in one event loop ---------------------------------------------


def shared_plan(n: int, events: int, connections: int, backend: str = "docify") -> Plan:
    """``n`` streams over ``connections`` connections (one per scenario / app, as deployed); 0: one each."""
    plan = build_plan(n, min_events=events, max_events=events, backend=backend)
    if connections <= 0 or connections >= n:
        return plan
    streams = tuple(
        dataclasses.replace(
            s,
            key=f"{plan.spec.key_prefix}load-key-shared-{s.index % connections:04d}",
            conn_id=f"{backend}_load_shared_{s.index % connections:04d}",
        )
        for s in plan.streams
    )
    return Plan(streams, plan.warmup, backend)


def check_shared(plan: Plan, outcomes: list[dict[str, Any]], stats: dict[str, Any]) -> list[str]:
    """Accounting when streams share keys: each ended in success with one event; runs sent and started = N."""
    from docify_provider.testing.keys import fingerprint

    problems = [
        f"stream {o['index']}: hung={o['hung']} raised={o['raised']} events={o['events']} status={o['status']}"
        for o in outcomes
        if o["hung"] or o["raised"] or o["events"] != 1 or o["status"] != "success"
    ]
    fps = {fingerprint(s.key) for s in plan.streams}
    for counter in ("started", "stream_requests"):
        total = sum(int(stats[counter].get(fp, 0)) for fp in fps)
        if total != len(plan.streams):
            problems.append(f"the emulator counted {total} {counter} for {len(plan.streams)} streams")
    return problems


def measure_event_loop(
    backend: str, n: int, seconds: float, event_interval: float, home: str, connections: int, ping_interval: float
) -> dict[str, Any]:
    """N concurrent trigger runs in one event-loop process; its peak memory and CPU, and the accounting."""
    events = stream_events(backend, seconds, event_interval)
    plan = shared_plan(n, events, connections, backend)
    with EmulatorProcess(plan, event_interval=event_interval, ping_interval=ping_interval) as emulator:
        report = run_load_child(plan, emulator.base_url, deadline=2 * seconds + 60, env={"AIRFLOW_HOME": home})
        stats = emulator.stats()
    if len({s.key for s in plan.streams}) < n:  # shared keys: per-key accounting does not apply
        problems = check_shared(plan, report["outcomes"], stats)
    else:
        problems = account(plan, report["outcomes"], stats).problems
    usage = dict(report["usage"])
    # When the emulator cannot keep the pace (1,000 threads on a busy machine) the streams last longer
    # than planned and CPU / wall understates the cost: also report CPU / the planned length.
    planned = (events - 1) * event_interval
    usage["cpu_cores_at_planned_rate"] = usage["cpu_seconds"] / planned if planned else 0.0
    usage["planned_seconds"] = planned
    usage.update({"streams": n, "events_per_stream": events, "problems": problems[:20], "ok": not problems})
    return usage


# -- report -----------------------------------------------------------------------------------------


def _gb(mb: float) -> str:
    return f"{mb / 1024:,.1f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


def report(backend: str, loops: dict[int, dict[str, Any]], workers: dict[str, Any]) -> None:
    """One backend's table, goal verdict and pace notes."""
    label = BACKENDS[backend].name
    print(
        f"{label} blocking: N x one worker process holding {WORKER_HOOK_CALLS[backend]}, extrapolated from "
        f"k={workers['k']} measured at once: RSS {workers['rss_mb']:.0f} MB, PSS {workers['pss_mb']:.0f} MB, "
        f"USS {workers['uss_mb']:.0f} MB each (mean), {workers['cores_per_stream']:.4f} core each."
    )
    header = (
        f"{'N':>6}  {'one event loop: peak RSS':>25}{'(streams add)':>15}{'CPU':>11}"
        f"  {'N workers: RSS':>15}{'USS':>11}{'CPU':>11}  {'memory ratio (USS)':>19}"
    )
    print(header)
    for n, usage in loops.items():
        blocking_rss = n * workers["rss_mb"]
        blocking_uss = n * workers["uss_mb"]
        ratio = blocking_uss / usage["peak_mb"]
        print(
            f"{n:>6}  {usage['peak_mb']:>22.0f} MB{usage['peak_above_baseline_mb']:>12.0f} MB"
            f"{usage['cpu_cores_avg']:>6.2f} core"
            f"  {_gb(blocking_rss):>15}{_gb(blocking_uss):>11}{n * workers['cores_per_stream']:>6.2f} core"
            f"  {ratio:>17.0f}x"
        )
        if not usage["ok"]:
            print(f"        {len(usage['problems'])} stream(s) not accounted for, e.g. {usage['problems'][:3]}")
    goal = loops.get(GOAL_STREAMS)
    if goal is not None:
        # Each part of the goal on its own line. CPU is CPU seconds over the planned stream length
        # (not over the wall time), so a loop that falls behind cannot look cheaper than it is.
        kept_pace = goal["wall_seconds"] <= 1.25 * goal["planned_seconds"]
        cores = max(goal["cpu_cores_avg"], goal["cpu_cores_at_planned_rate"])

        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        print(f"{label} goal for {GOAL_STREAMS:,} streams in one process:")
        print(f"  every stream accounted for: {verdict(goal['ok'])}")
        print(f"  resident under {GOAL_MB:g} MB: {goal['peak_mb']:.0f} MB -> {verdict(goal['peak_mb'] < GOAL_MB)}")
        print(
            f"  under {GOAL_CORES:g} core: {cores:.2f} core (busiest second "
            f"{goal['cpu_cores_busiest_second']:.2f}) -> {verdict(cores < GOAL_CORES)}"
        )
        print(
            f"  keeping the pace (within 25 %): {goal['wall_seconds']:.0f} s for {goal['planned_seconds']:.0f} s "
            f"streams -> {'yes' if kept_pace else 'no'}"
        )
    for n, usage in loops.items():
        if usage["wall_seconds"] > 1.2 * usage["planned_seconds"]:
            print(
                f"note: the {n} {label} streams took {usage['wall_seconds']:.0f} s instead of "
                f"{usage['planned_seconds']:.0f} s (the emulator or the machine could not keep the pace); "
                f"CPU seconds / planned length = {usage['cpu_cores_at_planned_rate']:.2f} core"
            )


def side_by_side(results: dict[str, tuple[dict[int, dict[str, Any]], dict[str, Any]]]) -> None:
    """The backends next to each other: per N, the event loop's peak RSS and CPU, N workers' USS."""
    names = list(results)
    cols = "".join(f"{BACKENDS[b].name + ' loop RSS':>18}{'CPU':>8}{'workers USS':>13}" for b in names)
    print(f"side by side (same run):\n{'N':>6}{cols}")
    for n in next(iter(results.values()))[0]:
        cells = ""
        for b in names:
            loops, workers = results[b]
            usage = loops[n]
            cells += f"{usage['peak_mb']:>15.0f} MB{usage['cpu_cores_avg']:>8.2f}{_gb(n * workers['uss_mb']):>13}"
        print(f"{n:>6}{cells}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="100,1000", help="comma-separated stream counts N")
    parser.add_argument(
        "--backends", "--backend", default="docify", help="comma-separated: docify, dify (both: side by side)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of every stream")
    parser.add_argument("--event-interval", type=float, default=1.0, help="seconds between a stream's events")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        help="seconds between keep-alive pings (default: Docify 15, a common SSE server keep-alive; "
        "Dify 10, what a Dify server sends; the Docify emulator's own default is 0.5)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=10,
        help="connections the streams share (one per scenario / app); 0: one connection and key per stream",
    )
    parser.add_argument("--workers", type=int, default=4, help="k worker processes measured for the blocking estimate")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument(
        "--worker", nargs=4, metavar=("BACKEND", "CONN_ID", "HOLD_AFTER", "EVENTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        worker_child(args.worker[0], args.worker[1], int(args.worker[2]), int(args.worker[3]))
        return 0

    counts = [int(n) for n in args.streams.split(",") if n.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    print(machine_line())
    results: dict[str, tuple[dict[int, dict[str, Any]], dict[str, Any]]] = {}
    pings = {b: args.ping_interval or DEFAULT_PING[b] for b in backends}
    with tempfile.TemporaryDirectory(prefix="docify-bench-home-") as home:
        for b in backends:
            loops = {
                n: measure_event_loop(b, n, args.seconds, args.event_interval, home, args.connections, pings[b])
                for n in counts
            }
            worker_seconds = min(args.seconds, 15.0)
            workers = measure_workers(b, args.workers, worker_seconds, args.event_interval, home, pings[b])
            results[b] = (loops, workers)

    shared = f"over {args.connections} connections" if args.connections > 0 else "one connection and key each"
    for b in backends:
        loops, workers = results[b]
        any_loop = next(iter(loops.values()))
        print(
            f"\n{BACKENDS[b].name}: streams held concurrently, one event every {args.event_interval:g} s and a "
            f"keep-alive ping every {pings[b]:g} s, {any_loop['planned_seconds']:g} s each, {shared} "
            "(emulator in its own process)."
        )
        report(b, loops, workers)
    if len(backends) > 1:
        print()
        side_by_side(results)
    if args.json:
        rows = {
            b: [
                {
                    "streams": n,
                    "event_loop": usage,
                    "blocking_rss_mb": n * workers["rss_mb"],
                    "blocking_uss_mb": n * workers["uss_mb"],
                }
                for n, usage in loops.items()
            ]
            for b, (loops, workers) in results.items()
        }
        workers_json = {b: w for b, (_, w) in results.items()}
        print(json.dumps({"machine": machine_info(), "ping_interval": pings, "rows": rows, "workers": workers_json}))
    return 0 if all(u["ok"] for loops, _ in results.values() for u in loops.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
