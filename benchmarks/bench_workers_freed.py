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
from _streams import (
    EmulatorProcess,
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


# -- the blocking alternative: one worker-like process per stream ------------------------------------


def worker_child(conn_id: str, hold_after: int) -> None:
    """Body of one worker-like process: import what a task process imports, stream one run.

    Prints ``holding`` once ``hold_after`` events arrived (the parent then reads our memory), and a
    JSON line with the CPU and wall seconds of the stream at the end.
    """
    import airflow.sdk
    import airflow.sdk.execution_time.task_runner  # noqa: F401  - the task process's entry point

    from docify_provider.hooks.docify import DocifyHook
    from docify_provider.operators.docify import DocifyStreamScenarioOperator, log_stream_event

    del DocifyStreamScenarioOperator  # imported only as the task's DAG file would import it
    import logging

    log = logging.getLogger("docify.bench.worker")
    hook = DocifyHook(docify_conn_id=conn_id)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    events = 0
    for event in hook.stream_scenario({"text": "worker stream"}, user="bench-worker"):
        log_stream_event(log, event)  # the operator logs every event; so does the trigger
        events += 1
        if events == hold_after:
            print("holding", flush=True)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    hook.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(json.dumps({"events": events, "cpu_seconds": cpu, "wall_seconds": time.monotonic() - wall0}), flush=True)


def measure_workers(k: int, seconds: float, event_interval: float, home: str, ping_interval: float) -> dict[str, Any]:
    """Start ``k`` worker-like processes at once; read their memory while all are mid-stream."""
    import psutil

    events = events_for_seconds(seconds, event_interval)
    plan = build_plan(k, min_events=events, max_events=events)
    hold_after = max(3, events // 3)
    with EmulatorProcess(plan, event_interval=event_interval, ping_interval=ping_interval) as emulator:
        env = {**os.environ, **connection_env(plan, emulator.base_url), "AIRFLOW_HOME": home}
        procs = [
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", spec.conn_id, str(hold_after)],
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


def shared_plan(n: int, events: int, connections: int) -> Plan:
    """``n`` streams over ``connections`` Docify connections (one per scenario, as deployed); 0: one each."""
    plan = build_plan(n, min_events=events, max_events=events)
    if connections <= 0 or connections >= n:
        return plan
    streams = tuple(
        dataclasses.replace(
            s,
            key=f"load-key-shared-{s.index % connections:04d}",
            conn_id=f"docify_load_shared_{s.index % connections:04d}",
        )
        for s in plan.streams
    )
    return Plan(streams, plan.warmup)


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
    n: int, seconds: float, event_interval: float, home: str, connections: int, ping_interval: float
) -> dict[str, Any]:
    """N concurrent trigger runs in one event-loop process; its peak memory and CPU, and the accounting."""
    events = events_for_seconds(seconds, event_interval)
    plan = shared_plan(n, events, connections)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="100,1000", help="comma-separated stream counts N")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of every stream")
    parser.add_argument("--event-interval", type=float, default=1.0, help="seconds between a stream's events")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=15.0,
        help="seconds between keep-alive pings (15: a common SSE server keep-alive; the emulator's default is 0.5)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=10,
        help="Docify connections the streams share (one per scenario); 0: one connection and key per stream",
    )
    parser.add_argument("--workers", type=int, default=4, help="k worker processes measured for the blocking estimate")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--worker", nargs=2, metavar=("CONN_ID", "HOLD_AFTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_child(args.worker[0], int(args.worker[1]))
        return 0

    counts = [int(n) for n in args.streams.split(",") if n.strip()]
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="docify-bench-home-") as home:
        loops = {
            n: measure_event_loop(n, args.seconds, args.event_interval, home, args.connections, args.ping_interval)
            for n in counts
        }
        workers = measure_workers(args.workers, min(args.seconds, 15.0), args.event_interval, home, args.ping_interval)

    shared = f"over {args.connections} connections" if args.connections > 0 else "one connection and key each"
    print(
        f"Streams held concurrently, one event every {args.event_interval:g} s and a keep-alive ping every "
        f"{args.ping_interval:g} s, {args.seconds:g} s each, {shared} (emulator in its own process)."
    )
    print(
        f"Blocking: N x one worker process holding DocifyHook.stream_scenario, extrapolated from k={workers['k']} "
        f"measured at once: RSS {workers['rss_mb']:.0f} MB, PSS {workers['pss_mb']:.0f} MB, "
        f"USS {workers['uss_mb']:.0f} MB each (mean), {workers['cores_per_stream']:.4f} core each."
    )
    header = (
        f"{'N':>6}  {'one event loop: peak RSS':>25}{'(streams add)':>15}{'CPU':>11}"
        f"  {'N workers: RSS':>15}{'USS':>11}{'CPU':>11}  {'memory ratio (USS)':>19}"
    )
    print(header)
    rows = []
    for n, usage in loops.items():
        blocking_rss = n * workers["rss_mb"]
        blocking_uss = n * workers["uss_mb"]
        ratio = blocking_uss / usage["peak_mb"]
        rows.append(
            {"streams": n, "event_loop": usage, "blocking_rss_mb": blocking_rss, "blocking_uss_mb": blocking_uss}
        )
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

        print(f"goal for {GOAL_STREAMS:,} streams in one process:")
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
                f"note: the {n} streams took {usage['wall_seconds']:.0f} s instead of {usage['planned_seconds']:.0f} s "
                f"(the emulator or the machine could not keep the pace); CPU seconds / planned length = "
                f"{usage['cpu_cores_at_planned_rate']:.2f} core"
            )
    if args.json:
        print(
            json.dumps(
                {"machine": machine_info(), "ping_interval": args.ping_interval, "rows": rows, "workers": workers}
            )
        )
    return 0 if all(u["ok"] for u in loops.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
