"""A triggerer killed mid-stream on a real deployment: nothing is paid for twice unless asked.

Docify has no idempotency key and no run-status endpoint, so a deferred stream whose triggerer dies
leaves a run that may be going on (and billed) with nobody listening. This test SIGKILLs the whole
triggerer process group while two deferred streams are in flight (the emulator slows them to ~25 s)
and starts a new triggerer, which picks both triggers up again:

* ``guarded`` (default settings): the restarted trigger finds its ``docify_run_request_sent`` XCom and
  reports "outcome unknown" instead of POSTing; the task fails at once, its retry unspent (it
  would fail closed on the pending marker kept in ``task_state_store``, key ``docify_state``), with
  a message that says the run may have been billed, was not re-sent, and where that marker is.
  Docify saw exactly one run.
* ``resubmit`` (``allow_resubmit=True``): the restarted trigger pays for a second run and the task
  succeeds. Docify saw exactly two runs.

The triggerer health threshold is lowered from 30 s to 10 s (heartbeats stay every second) only so
that the new triggerer takes the orphaned triggers over sooner; the takeover path is the same.
Timings are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing import SUMMARY_KEY, DocifyEmulator, Fault, fingerprint
from tests.deployment import ROOT, Deployment, Timeline, api, running_deployment, trigger_dag, wait_until

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.restart_guard,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # It kills a triggerer and times its replacement (10 s health threshold): alone (scripts/test.sh).
    pytest.mark.solo,
]

DAG_FILE = ROOT / "tests" / "dags" / "docify_triggerer_restart.py"
DAG_ID = "docify_triggerer_restart"
GUARDED_KEY = SUMMARY_KEY
#: A second key for the same scenario, so the emulator counts the opted-in task's runs apart.
RESUBMIT_KEY = "emulator-resubmit-key"
#: Seconds between stream events: the summary scenario's 6 events then take ~60 s, so that both
#: first streams are still in flight when the triggerer is killed even if the two tasks defer far
#: apart on a loaded machine (at 5 s, ~25 s, a full suite run once saw a stream finish first).
EVENT_INTERVAL = 12.0
#: [triggerer] triggerer_health_check_threshold for the deployment (Airflow's default is 30 s).
HEALTH_THRESHOLD = 10


def timeline_failed(timeline: Timeline) -> float:
    return next((when for when, label in timeline.marks if label == "guarded: failed (try 1)"), float("nan"))


def deployment(home: Path, dags_folder: Path, connections: dict[str, dict[str, Any]]) -> Any:
    """``running_deployment`` with two settings this test needs in every component."""
    return running_deployment(
        home,
        dags_folder=dags_folder,
        connections=connections,
        env={
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_THRESHOLD),
            # The REST API without a login, for polling task states once a second (the CLI takes seconds).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        },
    )


def task_instances(dep: Deployment, run_id: str) -> dict[str, dict[str, Any]]:
    """``{task_id: {"state": ..., "try_number": ...}}`` ({} while the API cannot answer)."""
    answer = api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances") or {}
    return {ti["task_id"]: ti for ti in answer.get("task_instances", [])}


def trigger_run(dep: Deployment) -> str:
    """Trigger the DAG once the dag processor has stored it; returns the run id."""
    return trigger_dag(dep, DAG_ID, "restart")


def run_state(dep: Deployment, run_id: str) -> str | None:
    state = (api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}") or {}).get("state")
    return state if state in ("success", "failed") else None


def task_log_dir(home: Path, run_id: str, task_id: str) -> Path:
    return home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"


def trigger_logs(home: Path, run_id: str, task_id: str) -> list[Path]:
    """The try-1 trigger logs of a task, oldest triggerer first: one file per triggerer job id."""
    paths = task_log_dir(home, run_id, task_id).glob("attempt=1.log.trigger.*.log")
    return sorted(paths, key=lambda p: int(p.name.split(".")[-2]))  # attempt=1.log.trigger.<job id>.log


def stream_requests(emu: DocifyEmulator, key: str) -> int:
    return sum(1 for r in emu.requests if r.endpoint == "stream" and r.key_fingerprint == fingerprint(key))


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a killed child waits for a reaper a moment)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def log_messages(path: Path) -> list[str]:
    """What the UI shows of a task log: each JSON line's message, and ``type: message`` of an exception."""
    messages = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        messages.append(f"{record.get('timestamp', '')[11:23]} {record.get('level', '')}: {record.get('event')}")
        for error in record.get("error_detail") or []:
            messages.append(f"    {error.get('exc_type')}: {error.get('exc_value')}")
    return messages


def log_time(path: Path, contains: str) -> float:
    """Seconds since the epoch of the first JSON log record of ``path`` whose message has ``contains``."""
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if contains in str(record.get("event")):
                return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no log record with {contains!r} in {path}")


def docify_lines(path: Path) -> list[str]:
    return [m for m in log_messages(path) if "Docify" in m]


def test_triggerer_killed_mid_stream_never_pays_twice_unless_opted_in(
    tmp_path: Path, docify_emulator: DocifyEmulator
) -> None:
    emu = docify_emulator
    emu.add_key(RESUBMIT_KEY, "TEXT_SUMMARY")
    # Only the first stream of each key is slow: a resubmitted run answers at once.
    emu.inject(Fault("stream", "slow_events", interval=EVENT_INTERVAL, key=GUARDED_KEY))
    # Only the first stream is slow: the opted-in resubmission after the restart runs at normal speed.
    emu.inject(Fault("stream", "slow_events", interval=EVENT_INTERVAL, key=RESUBMIT_KEY, times=1))
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    home = tmp_path / "home"
    connections = {
        "docify_restart_guarded": {"conn_type": "docify", "host": emu.base_url, "password": GUARDED_KEY},
        "docify_restart_resubmit": {"conn_type": "docify", "host": emu.base_url, "password": RESUBMIT_KEY},
    }
    both = ("guarded", "resubmit")
    timeline = Timeline("task log")
    print()
    with deployment(home, dags, connections) as dep:
        timeline.mark("deployment up (db migrated, 4 components started, API healthy)")
        run_id = trigger_run(dep)
        timeline.mark(f"DAG run {run_id} triggered")

        def in_flight() -> bool:
            tis = task_instances(dep, run_id)
            return (
                all(tis.get(t, {}).get("state") == "deferred" for t in both)
                and emu.runs_started(GUARDED_KEY) == 1
                and emu.runs_started(RESUBMIT_KEY) == 1
                # The START event reached the trigger: its marker now carries the session id.
                and all(
                    any("Docify stream START" in p.read_text(errors="replace") for p in trigger_logs(home, run_id, t))
                    for t in both
                )
            )

        wait_until("both tasks deferred with their runs started", in_flight, timeout=180)
        timeline.mark("both tasks deferred, runs_started == 1 per key, START events in the trigger logs")
        first_triggerer_logs = {t: trigger_logs(home, run_id, t) for t in both}

        triggerer_pgid = dep.procs["triggerer"].pid
        kill_started = time.monotonic()
        dep.stop("triggerer", sig=signal.SIGKILL)
        kill_seconds = time.monotonic() - kill_started
        killed_at = timeline.mark(f"triggerer process group SIGKILLed ({kill_seconds * 1000:.0f} ms)")
        # SIGKILL reaches every member at once; give the kernel a moment to finish them off.
        wait_until("the triggerer's trigger runner to die", lambda: not live_group_members(triggerer_pgid), 5, 0.1)

        time.sleep(3)
        dep.start("triggerer")
        restarted_at = timeline.mark("new triggerer started")

        def picked_up() -> bool:
            return all(len(trigger_logs(home, run_id, t)) > len(first_triggerer_logs[t]) for t in both)

        # A trigger log file appears with its first flushed record, so this sees the takeover late;
        # the timings below come from the records' own timestamps.
        wait_until("the new triggerer to run both triggers", picked_up, timeout=120)

        seen: dict[str, str] = {}

        def finished() -> bool:
            tis = task_instances(dep, run_id)
            for task_id, ti in tis.items():
                step = f"{ti.get('state')} (try {ti.get('try_number')})"
                if seen.get(task_id) != step:
                    seen[task_id] = step
                    timeline.mark(f"{task_id}: {step}")
            return all(tis.get(t, {}).get("state") in ("success", "failed") for t in both)

        wait_until("both tasks to finish", finished, timeout=180, interval=1)
        state = wait_until("the DAG run to finish", lambda: run_state(dep, run_id), timeout=60)
        timeline.mark(f"DAG run {state}")
        tis = task_instances(dep, run_id)
        logs = dep.read_logs()
    total = time.monotonic() - timeline.start

    guarded_dir = task_log_dir(home, run_id, "guarded")
    restarted_log = trigger_logs(home, run_id, "guarded")[-1]
    pickup_at = timeline.mark("log: new triggerer starts the guarded trigger", log_time(restarted_log, "starting"))
    fired_at = timeline.mark("log: restarted guarded trigger fires outcome_unknown", log_time(restarted_log, "fired"))
    timeline.print_sequence()
    outcome_unknown = [line for line in docify_lines(guarded_dir / "attempt=1.log") if "outcome unknown" in line]
    restarted_trigger_lines = {t: docify_lines(trigger_logs(home, run_id, t)[-1]) for t in both}
    print(
        f"triggerer restart: kill {kill_seconds * 1000:.0f} ms; new triggerer started -> trigger picked up "
        f"{pickup_at - restarted_at:.1f}s (kill -> pick-up {pickup_at - killed_at:.1f}s); pick-up -> outcome_unknown "
        f"event {fired_at - pickup_at:.1f}s; kill -> guarded failed for good "
        f"{timeline_failed(timeline) - killed_at:.1f}s; total {total:.1f}s"
    )
    print(
        f"runs_started: guarded {emu.runs_started(GUARDED_KEY)}, resubmit {emu.runs_started(RESUBMIT_KEY)}; "
        f"stream requests: guarded {stream_requests(emu, GUARDED_KEY)}, resubmit {stream_requests(emu, RESUBMIT_KEY)}; "
        f"runs_completed: guarded {emu.runs_completed(GUARDED_KEY)}, resubmit {emu.runs_completed(RESUBMIT_KEY)}"
    )
    print("final task states:", {t: (tis[t]["state"], tis[t]["try_number"]) for t in both})
    for task_id, lines in restarted_trigger_lines.items():
        print(f"restarted trigger log ({task_id}):")
        for line in lines:
            print("   ", line)
    print("guarded try 1 task log:", *outcome_unknown, sep="\n    ")

    context = f"tasks: {tis}\nlogs in {home}"
    # Not a second run: the restarted trigger reported outcome unknown and the task failed at once.
    assert emu.runs_started(GUARDED_KEY) == 1, context
    assert stream_requests(emu, GUARDED_KEY) == 1, context
    assert emu.runs_completed(GUARDED_KEY) == 0, "the kill must have cut the stream mid-way"
    assert (tis["guarded"]["state"], tis["guarded"]["try_number"]) == ("failed", 1), context
    assert any("earlier trigger of this task instance already sent the run" in line for line in outcome_unknown)
    assert any("may have been started and billed, so it is not re-sent" in line for line in outcome_unknown)
    assert re.search(r"\(session [0-9a-f-]{8,}\)", " ".join(outcome_unknown)), "the message names the session"
    failed = [line for line in log_messages(guarded_dir / "attempt=1.log") if "AirflowFailException" in line]
    assert any("Not retried (DocifyOutcomeUnknownError)" in line and "'docify_state'" in line for line in failed)
    assert not list(guarded_dir.glob("attempt=2.log*")), "retries=1 is left unspent: a retry could only fail closed"
    assert any("outcome unknown" in line for line in restarted_trigger_lines["guarded"])
    assert not any("Sending Docify run" in line for line in restarted_trigger_lines["guarded"])
    # Opted in: the restarted trigger paid for a second run, and the task succeeded with it.
    assert emu.runs_started(RESUBMIT_KEY) == 2, context
    assert stream_requests(emu, RESUBMIT_KEY) == 2, context
    assert emu.runs_completed(RESUBMIT_KEY) == 1, "the first stream was cut, the resubmitted one finished"
    assert (tis["resubmit"]["state"], tis["resubmit"]["try_number"]) == ("success", 1), context
    assert any("allow_resubmit=True, so a new run is sent" in line for line in restarted_trigger_lines["resubmit"])
    assert state == "failed"
    for key in (GUARDED_KEY, RESUBMIT_KEY):
        assert key not in logs, "an API key reached a log file"
