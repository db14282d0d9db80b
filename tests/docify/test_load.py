"""The concurrent-stream load test at suite size: 100 deferrable streams in one event loop, 5 % faulty.

The same harness as ``benchmarks/bench_concurrent_streams.py`` (``benchmarks/_streams.py``), scaled
down so that it runs in the suite: the emulator in one child process, every stream's
``DocifyStreamTrigger`` (built, serialised and re-created as a triggerer does) iterated in its own
asyncio task of ONE event loop in a second child process, streams of 2-4 s with an event every
0.2 s. What a user would notice if it broke: a stream that never ends (a deferred task stuck
forever), a run that fails with the wrong error (wrong retry decision), or a run request sent
twice (paid twice).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _stream_emulator import EmulatorProcess
from _streams import (
    EXPECTED,
    FAULT_KINDS,
    account,
    accounting_table,
    build_plan,
    events_for_seconds,
    run_load_child,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STREAMS = 100
FAULT_RATE = 0.05
EVENT_INTERVAL = 0.2
#: Far above the longest stream (4 s) plus start-up; a stream still open then is hung.
DEADLINE = 25.0


def test_100_concurrent_deferred_streams_with_faults_are_all_accounted_for(tmp_path: Path) -> None:
    plan = build_plan(
        STREAMS,
        fault_rate=FAULT_RATE,
        min_events=events_for_seconds(2, EVENT_INTERVAL),
        max_events=events_for_seconds(4, EVENT_INTERVAL),
    )
    faults = plan.faults()
    assert sum(n for kind, n in faults.items() if kind) == 5 and set(faults) == {None, *FAULT_KINDS}

    with EmulatorProcess(plan, event_interval=EVENT_INTERVAL, ping_interval=0.5) as emulator:
        report = run_load_child(plan, emulator.base_url, deadline=DEADLINE, env={"AIRFLOW_HOME": str(tmp_path)})
        stats = emulator.stats()
    acc = account(plan, report["outcomes"], stats)
    table = "\n".join(accounting_table(acc))

    # Every stream ended (none hung), with exactly one trigger event, as its fault says it must
    # (success, or its typed error); each run request reached the emulator once and was started at
    # most once (never for the 503); every injected fault was applied.
    assert acc.problems == [], table + "\n" + "\n".join(acc.problems)
    assert acc.hung == 0
    assert all(row["as_expected"] == row["streams"] for row in acc.rows.values()), table
    assert sum(row["streams"] for row in acc.rows.values()) == STREAMS
    assert acc.runs_started == acc.expected_started == sum(EXPECTED[s.fault][2] for s in plan.streams)
    assert all(n == 1 for n in stats["stream_requests"].values())
    outcomes = {o["index"]: o for o in report["outcomes"]}
    assert len(outcomes) == STREAMS
    for spec in plan.streams:
        status, error_type, _ = EXPECTED[spec.fault]
        assert (outcomes[spec.index]["status"], outcomes[spec.index]["error_type"]) == (status, error_type)
    assert report["log_lines"] > STREAMS  # every trigger logged through the triggerer-style channel
