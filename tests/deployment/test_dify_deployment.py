"""A Dify stream outlives its triggerer on a real deployment with two triggerers: one run billed.

Dify, unlike Docify, can be re-attached to: a run has an id (``workflow_run_id``), a detail
endpoint and an events stream. ``DifyWorkflowTrigger`` writes the id into its XCom marker
(``dify_run_request_sent``) when ``workflow_started`` arrives, so a trigger restarted on another
triggerer re-attaches to that run instead of sending it again.

The deployment: API server, scheduler, dag processor and two triggerers (``triggerer-1`` and
``triggerer-2``, each reporting its own hostname, ``deployment.as_host``) as separate processes,
``[triggerer] triggerer_health_check_threshold`` lowered to 10 s. One deferrable
``DifyStreamWorkflowOperator`` task runs the emulator's long app (~45 s, a text chunk every 5 s).
Once the task is deferred, the run started, its id in the marker and its first text chunk in the
trigger's log (the stream is mid-way), the test finds the
triggerer holding the trigger (the task instance's ``trigger.triggerer_id`` -> the job's
hostname), SIGKILLs that triggerer's whole process group, and watches the other one take the
trigger over and re-attach (run detail, then the events endpoint). Checked: the task succeeded on
its first try with the run's outputs, one run was started (billed) and it was never re-sent, the
re-attach went through the run detail / events endpoints, and the key is in no log. The figures
(kill -> pick-up -> re-attached -> success) are printed with ``pytest -s``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import LONG_APP_KEY, DifyEmulator
from tests.deployment import (
    ROOT,
    Deployment,
    Timeline,
    api,
    running_deployment,
    task_xcom,
    trigger_dag,
    triggerer,
    wait_until,
)

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # It kills a triggerer and times its replacement (10 s health threshold): alone (scripts/test.sh).
    pytest.mark.solo,
]

DAG_FILE = ROOT / "tests" / "dags" / "dify_two_triggerers.py"
DAG_ID = "dify_two_triggerers"
TASK_ID = "long_stream"
CONN_ID = "dify_long"
#: What the DAG file asks of the long app (its RUN_SECONDS / RUN_STEPS).
RUN_SECONDS, RUN_STEPS = 45, 9
TRIGGERERS = ("triggerer-1", "triggerer-2")
#: [triggerer] triggerer_health_check_threshold (Airflow's default is 30 s).
HEALTH_THRESHOLD = 10
MARKER_KEY = "dify_run_request_sent"


def task_instance(dep: Deployment, run_id: str) -> dict[str, Any]:
    """The task instance (with its ``trigger``), or {} while the API cannot answer."""
    return api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}") or {}


def xcom(dep: Deployment, run_id: str, key: str) -> Any:
    """The value of the task's XCom ``key`` (None while there is none)."""
    return task_xcom(dep, DAG_ID, run_id, TASK_ID, key)


def triggerer_hostnames(dep: Deployment) -> dict[int, str]:
    """``{triggerer job id: hostname}`` from the REST API."""
    jobs = (api(dep, "GET", "/jobs", params={"job_type": "TriggererJob", "limit": 100}) or {}).get("jobs", [])
    return {int(job["id"]): job["hostname"] for job in jobs}


def holder(dep: Deployment, run_id: str) -> int | None:
    """The id of the triggerer job the task's trigger is assigned to (None: unassigned / no trigger)."""
    trigger = task_instance(dep, run_id).get("trigger") or {}
    return trigger.get("triggerer_id")


def trigger_logs(home: Path, run_id: str) -> dict[int, Path]:
    """The try-1 trigger logs of the task by triggerer job id (``attempt=1.log.trigger.<job id>.log``)."""
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
    return {int(p.name.split(".")[-2]): p for p in folder.glob("attempt=1.log.trigger.*.log")}


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a task/trigger log."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out


def messages(path: Path) -> list[str]:
    return [f"{r.get('timestamp', '')[11:23]} {r.get('level', '')}: {r.get('event')}" for r in records(path)]


def log_time(path: Path, contains: str | None = None) -> float | None:
    """Seconds since the epoch of the first record of ``path`` whose message has ``contains`` (any: None)."""
    for record in records(path):
        if (contains is None or contains in str(record.get("event"))) and record.get("timestamp"):
            return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()
    return None


def requests_to(emu: DifyEmulator, endpoint: str) -> int:
    return sum(1 for r in emu.requests if r.endpoint == endpoint)


def test_dify_stream_survives_its_triggerer_being_killed_with_one_run_billed(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    home = tmp_path / "home"
    timeline = Timeline("trigger log")
    print()
    # Pings every second keep the stream (and a re-attached events stream) alive across the 5 s gaps.
    with DifyEmulator(ping_interval=1.0, idle_close_seconds=300.0) as emu:
        connections = {CONN_ID: {"conn_type": "dify", "host": emu.base_url, "password": LONG_APP_KEY}}
        with running_deployment(
            home,
            dags_folder=dags,
            connections=connections,
            env={
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_THRESHOLD),
                # The REST API without a login, polled twice a second (the CLI takes seconds per call).
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            },
            components=("api-server", "scheduler", "dag-processor", *(triggerer(home, n) for n in TRIGGERERS)),
        ) as dep:
            timeline.mark("deployment up (api-server, scheduler, dag-processor, 2 triggerers; API healthy)")
            run_id = trigger_dag(dep, DAG_ID, "dify_restart")
            timeline.mark(f"DAG run {run_id} triggered")

            def in_flight() -> int | None:
                ti = task_instance(dep, run_id)
                marker = xcom(dep, run_id, MARKER_KEY)
                job = (ti.get("trigger") or {}).get("triggerer_id")
                texts = [p.read_text(errors="replace") for p in trigger_logs(home, run_id).values()]
                # workflow_started reached the trigger, and the first text chunk too: the stream is mid-way.
                started = any("Dify workflow started" in t and "Dify: step 1/" in t for t in texts)
                if (
                    ti.get("state") == "deferred"
                    and emu.runs_started(key=LONG_APP_KEY) == 1
                    and isinstance(marker, dict)
                    and marker.get("workflow_run_id")
                    and started
                    and job is not None
                ):
                    return int(job)
                return None

            first_job = wait_until(
                "the task deferred, its run started, its id in the marker and the stream mid-way", in_flight, 240
            )
            hosts = wait_until("both triggerer jobs", lambda: (h := triggerer_hostnames(dep)) and len(h) >= 2 and h, 60)
            victim = hosts[first_job]
            survivor = next(n for n in TRIGGERERS if n != victim)
            [dify_run] = emu.runs
            marker = xcom(dep, run_id, MARKER_KEY)
            timeline.mark(
                f"deferred; run {dify_run.id} started (runs_started == 1), its id in the marker, "
                f"step 1 streamed; held by {victim} (job {first_job})"
            )
            completed_at_kill = emu.runs_completed(key=LONG_APP_KEY)
            detail_before = requests_to(emu, "run_detail")
            events_before = emu.events_requests(key=LONG_APP_KEY)

            pgid = dep.procs[victim].pid
            dep.stop(victim, sig=signal.SIGKILL)
            killed_wall = time.time()
            killed_at = timeline.mark(
                f"{victim} process group SIGKILLed (run {time.time() - dify_run.created_at:.1f}s in)"
            )
            wait_until(f"{victim}'s processes to die", lambda: not live_group_members(pgid), 10, 0.1)

            seen: dict[str, Any] = {}

            def watch() -> bool:
                """Mark each change: the trigger's holder, re-attach requests, the task state."""
                job = holder(dep, run_id)
                if job != seen.get("holder", first_job):
                    seen["holder"] = job
                    name = triggerer_hostnames(dep).get(job, "?") if job is not None else "nobody"
                    seen.setdefault("picked_up", None)
                    if job is not None and job != first_job and seen["picked_up"] is None:
                        seen["picked_up"] = timeline.mark(f"trigger assigned to {name} (job {job})")
                        seen["new_job"] = job
                    else:
                        timeline.mark(f"trigger assigned to {name}")
                detail = requests_to(emu, "run_detail") - detail_before
                events = emu.events_requests(key=LONG_APP_KEY) - events_before
                if (detail, events) != seen.get("lookups", (0, 0)):
                    seen["lookups"] = (detail, events)
                    timeline.mark(f"emulator: {detail} run-detail, {events} events request(s) since the kill")
                ti = task_instance(dep, run_id)
                step = f"{ti.get('state')} (try {ti.get('try_number')})"
                if ti and seen.get("step") != step:
                    seen["step"] = step
                    timeline.mark(f"task {step}")
                return ti.get("state") in ("success", "failed", "up_for_retry")

            wait_until("the task to finish", watch, timeout=240, interval=0.5)
            done_at = timeline.mark("task finished")
            state = wait_until(
                "the DAG run to finish",
                lambda: (
                    (s := (api(dep, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}") or {}).get("state"))
                    in ("success", "failed")
                    and s
                ),
                timeout=60,
            )
            timeline.mark(f"DAG run {state}")
            ti = task_instance(dep, run_id)
            result = xcom(dep, run_id, "return_value")
            hosts = triggerer_hostnames(dep)
            logs = dep.read_logs()
    total = time.monotonic() - timeline.start

    context = f"task: {ti}\nlogs in {home}"
    by_job = trigger_logs(home, run_id)
    new_jobs = [job for job in by_job if job != first_job]
    assert len(new_jobs) == 1, f"one trigger log per triggerer that held the trigger: {by_job}; {context}"
    [new_job] = new_jobs
    new_log = by_job[new_job]
    pickup_wall = log_time(new_log)
    reattach_wall = log_time(new_log, "re-attaching to it")
    success_at = next((w for w, label in timeline.marks if label.startswith("task success")), done_at)
    if pickup_wall is not None:
        timeline.mark(f"log: {hosts.get(new_job)} starts the trigger (first record)", pickup_wall)
    if reattach_wall is not None:
        timeline.mark("log: 'An earlier trigger started Dify run ...; re-attaching to it'", reattach_wall)
    timeline.print_sequence()
    print(f"trigger log on {hosts.get(new_job)} (job {new_job}):")
    for line in messages(new_log):
        print("   ", line)

    detail_after = requests_to(emu, "run_detail") - detail_before
    events_after = emu.events_requests(key=LONG_APP_KEY) - events_before
    runs_billed = emu.runs_started(key=LONG_APP_KEY)
    run_posts = requests_to(emu, "run") + requests_to(emu, "stream")
    kill_to_pickup = (pickup_wall - killed_wall) if pickup_wall else float("nan")
    pickup_to_reattach = (reattach_wall - pickup_wall) if pickup_wall and reattach_wall else float("nan")
    print(
        f"dify two triggerers: killed {victim}; kill -> {survivor} picks up the trigger {kill_to_pickup:.1f}s "
        f"(API saw the reassignment after {(seen.get('picked_up') or float('nan')) - killed_at:.1f}s); "
        f"pick-up -> re-attached {pickup_to_reattach:.1f}s; kill -> task success {success_at - killed_at:.1f}s; "
        f"total {total:.1f}s; runs billed {runs_billed}; run POSTs {run_posts}; re-attach lookups "
        f"since the kill: {detail_after} run detail, {events_after} events"
    )

    assert state == "success", context
    assert (ti["state"], ti["try_number"]) == ("success", 1), context
    assert marker["workflow_run_id"] == dify_run.id and marker.get("task_id") == dify_run.task_id, marker
    # One run billed: the second trigger never sent the request again.
    assert runs_billed == 1, context
    assert run_posts == 1 and requests_to(emu, "stream") == 1, "the (streaming) run request was sent once"
    assert emu.runs_completed(key=LONG_APP_KEY) == 1
    assert completed_at_kill == 0, "the kill must have cut the stream mid-way"
    # The other triggerer took the trigger over and re-attached through the run's lookups.
    assert hosts.get(new_job) == survivor, f"{hosts}; new job {new_job}"
    assert detail_after + events_after >= 1, "the re-attach read the run detail or its events"
    new_text = "\n".join(messages(new_log))
    assert reattach_wall is not None, new_text
    assert f"Re-attaching to Dify run {dify_run.id}" in new_text, new_text
    assert "Sending Dify run" not in new_text, new_text
    # The task's XCom is the run's.
    assert isinstance(result, dict), result
    assert result["workflow_run_id"] == dify_run.id and result["task_id"] == dify_run.task_id, result
    assert result["status"] == "succeeded", result
    assert result["outputs"] == {"text": f"Waited {RUN_SECONDS:g} seconds in {RUN_STEPS} step(s)"}, result
    assert result["outputs"] == dify_run.outputs
    assert LONG_APP_KEY not in logs, "the API key reached a log file"
