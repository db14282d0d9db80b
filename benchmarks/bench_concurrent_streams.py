"""1,000 deferrable Docify streams in ONE triggerer-like event loop, 5 % with injected faults.

The streams without a fault share one ``AIRFLOW_CONN_*`` connection per stream length (as a
deployment has one per scenario); each faulty stream has its own key and connection, and with
``--key-per-stream`` every stream has (the worst case for Airflow's secrets masker, whose pattern
is rebuilt for every new key). Each ``DocifyStreamTrigger`` is
built as the operator builds it, serialised and re-created as the triggerer does, and its ``run()``
iterated in its own asyncio task of one event loop, in a child process (JSON logging as in a
triggerer's runner, XCom and masking through a stand-in of the runner's channel to its supervisor,
``_triggerer_channel.py``). The emulator runs in a second child process with one thread per connection;
faults are bound to single keys, dealt in turn: drop mid-stream, ERROR event, end without
COMPLETE, 503 before the response, malformed event. Checked: every stream ends as its fault says
(success, or the typed error), with exactly one trigger event, none still running at the overall
deadline, and the emulator received each stream's run request once and started it at most once
(never for the 503). Reported: peak resident memory (VmHWM) and CPU of the event-loop process,
the emulator's CPU, the load average, and when the longest streams without a fault ended, counted
from the moment all streams were started. Goal: they keep their pace, ending within their planned
length + 1 s (20 s streams within 21 s); the last line is that verdict.

    .venv/bin/python benchmarks/bench_concurrent_streams.py --streams 1000 --fault-rate 0.05 --event-interval 1.0

Exits with status 1 when any stream is unaccounted for (not when the pace is missed: a busy
machine slows the streams, not the provider's correctness).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_line
from _stream_emulator import EmulatorProcess
from _streams import Plan, account, accounting_table, build_plan, events_for_seconds, run_load_child

#: How much later than its planned length a stream may end and still have kept its pace.
PACE_SLACK_SECONDS = 1.0


def pace(plan: Plan, outcomes: list[dict[str, Any]], interval: float) -> dict[str, float]:
    """When the longest streams without a fault ended, counted from the moment all streams were
    started: the latest and the median end, against their planned length."""
    longest = max(s.events for s in plan.streams)
    ends = sorted(
        o["ended_at"]
        for o in outcomes
        if plan.streams[o["index"]].events == longest and not plan.streams[o["index"]].fault
    )
    planned = (longest - 1) * interval
    return {
        "planned": planned,
        "goal": planned + PACE_SLACK_SECONDS,
        "last": ends[-1],
        "median": ends[len(ends) // 2],
        "streams": len(ends),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--event-interval", type=float, default=1.0, help="seconds between a stream's events")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="shortest stream")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="longest stream")
    parser.add_argument("--ping-interval", type=float, default=0.5, help="emulator keep-alive pings; 0: none")
    parser.add_argument("--deadline", type=float, default=None, help="overall deadline (default 2 x longest + 60 s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--key-per-stream",
        action="store_true",
        help="every stream its own key and connection (default: the streams without a fault share one per length)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args()

    plan = build_plan(
        args.streams,
        fault_rate=args.fault_rate,
        min_events=events_for_seconds(args.min_seconds, args.event_interval),
        max_events=events_for_seconds(args.max_seconds, args.event_interval),
        seed=args.seed,
        shared=not args.key_per_stream,
    )
    deadline = args.deadline or 2 * args.max_seconds + 60
    with (
        tempfile.TemporaryDirectory(prefix="docify-bench-home-") as home,
        EmulatorProcess(plan, event_interval=args.event_interval, ping_interval=args.ping_interval) as emulator,
    ):
        print(machine_line(), flush=True)
        emulator_cpu = emulator.stats()["cpu_seconds"]
        report = run_load_child(plan, emulator.base_url, deadline=deadline, env={"AIRFLOW_HOME": home})
        stats = emulator.stats()
        emulator_cpu = stats["cpu_seconds"] - emulator_cpu
    load_after = os.getloadavg()[0]
    acc = account(plan, report["outcomes"], stats)
    usage = report["usage"]
    faulty = sum(1 for s in plan.streams if s.fault)
    keys = len({s.key for s in plan.streams})
    kept = pace(plan, report["outcomes"], args.event_interval)

    print(
        f"{args.streams} deferrable streams (DocifyStreamTrigger.run) in one asyncio event loop, {faulty} with "
        f"injected faults; an event every {args.event_interval:g} s, "
        f"streams {args.min_seconds:g}-{args.max_seconds:g} s, "
        f"pings every {args.ping_interval:g} s; {keys} connections (each its own key)"
    )
    for line in accounting_table(acc):
        print(line)
    print(
        f"hung at the {deadline:g} s deadline: {acc.hung}; runs sent twice: {acc.resent}; "
        f"trigger log lines: {report['log_lines']}"
    )
    print()
    print(f"{'event-loop process':<44}{'value':>12}")
    print(f"{'peak resident (VmHWM)':<44}{usage['peak_mb']:>9.1f} MB")
    print(f"{'  resident before the streams (imports)':<44}{usage['baseline_mb']:>9.1f} MB")
    print(f"{'  added by the streams':<44}{usage['peak_above_baseline_mb']:>9.1f} MB")
    print(f"{'CPU seconds, all streams':<44}{usage['cpu_seconds']:>10.1f} s")
    print(f"{'CPU, average over the run':<44}{usage['cpu_cores_avg']:>9.2f} core")
    print(f"{'CPU, busiest second':<44}{usage['cpu_cores_busiest_second']:>9.2f} core")
    print(f"{'wall time, all streams':<44}{usage['wall_seconds']:>10.1f} s")
    print(
        f"emulator process: peak {stats['peak_threads']} threads, {stats['vmhwm_kb'] / 1024:.0f} MB peak resident, "
        f"{emulator_cpu:.1f} CPU seconds; load average {load_after:.2f} at the end"
    )
    if acc.problems:
        print(f"\n{len(acc.problems)} problem(s):")
        for problem in acc.problems[:50]:
            print("  " + problem)
    print(
        f"\npace: the {kept['streams']} streams of {kept['planned']:g} s without a fault ended "
        f"{kept['last']:.1f} s after all streams started (median {kept['median']:.1f} s); goal: within "
        f"{kept['goal']:g} s -> {'met' if kept['last'] <= kept['goal'] else 'MISSED'}"
    )
    if args.json:
        figures = {"usage": usage, "problems": acc.problems, "rows": acc.rows, "emulator": stats["peak_threads"]}
        print(json.dumps({**figures, "pace": kept, "emulator_cpu_seconds": emulator_cpu, "keys": keys}))
    return 1 if acc.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
