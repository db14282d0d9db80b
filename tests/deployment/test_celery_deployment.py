"""The invoice pipeline on a CeleryExecutor deployment: two Celery workers and two triggerers.

Every component is a process of its own, as on a small production install: API server,
scheduler, dag processor, two triggerers and two Celery workers (node names ``worker-1@<host>``
and ``worker-2@<host>``, 2 slots each), with a throwaway ``redis-server`` from Debian's packages
as the broker (``scripts/services.sh`` installs it when it is missing). The test checks what a
user would check: the DAG run succeeded, the table has one row per document, each attachment is
on disk once in a folder of its own task, Docify billed one run per document and none twice, the
mapped ``extract`` tasks ran on both workers, their deferred streams were held by both
triggerers, and the API key is in no log.

Metadata database: SQLite, as in ``test_deployment.py``. With Airflow 3 the Celery workers (and
the task processes they start) never open the metadata database: they talk to the API server's
execution API, so the only writers are the scheduler, the API server, the dag processor and the
two triggerers, which SQLite serialises without lock errors at this scale (tried repeatedly).
The Celery result backend is the same Redis (database 1), not ``db+sqlite``: every worker creates
the result tables at start-up, and two workers racing on ``CREATE TABLE`` in one SQLite file can
kill one of them.

Making the spread deterministic rather than likely:

* workers: Airflow's Celery defaults (prefetch multiplier 1, late acks) let a worker hold at
  most ``concurrency`` (2) unacknowledged tasks, so the 6 mapped tasks queued together cannot all
  go to one worker; both workers are ready before the run is triggered;
* triggerers: each takes at most 3 triggers (``--capacity 3``), and the emulator spaces the
  stream events so that each stream lasts ~8 s, long enough for more than 3 to be in flight.

Where a task ran is read as an operator of a multi-machine deployment reads it, from the task
instance's ``hostname`` (REST API) and the triggerer job's ``hostname``; since every process
here is on one machine, each worker and triggerer reports its own name as its host
(``deployment.as_host``). Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docify_provider.testing import INVOICE_KEY, DocifyEmulator, Fault
from docify_provider.testing.samples import make_sample_invoices
from tests.deployment import (
    ROOT,
    Component,
    Deployment,
    celery_worker,
    landed_invoice_rows,
    redis_server,
    running_deployment,
    triggerer,
)

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "example_docify_invoices"
DOCUMENTS = 6
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")
#: Slots per worker and triggers per triggerer: both below what one process would need for all 6.
WORKER_CONCURRENCY = 2
TRIGGERER_CAPACITY = 3
#: Seconds between stream events: the invoice scenario's 7 events then take ~8 s per stream.
EVENT_INTERVAL = 1.2


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh ``redis-server`` for this test (installed through scripts/services.sh if missing)."""
    if shutil.which("redis-server") is None:
        setup = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")], capture_output=True, text=True)
        if setup.returncode != 0 or shutil.which("redis-server") is None:
            pytest.skip(f"redis-server is not installed and scripts/services.sh could not install it: {setup.stderr}")
    with redis_server(tmp_path / "redis") as url:
        yield url


def workloads_run(log: Path, task_id: str) -> Counter[int]:
    """Map indexes of ``task_id`` in the "Executing workload in Celery" lines of a worker's log."""
    pattern = re.compile(rf"Executing workload in Celery: .*task_id='{task_id}'.*?map_index=(-?\d+)")
    return Counter(
        int(m.group(1)) for line in log.read_text(errors="replace").splitlines() if (m := pattern.search(line))
    )


def api(dep: Deployment, path: str) -> Any:
    response = httpx.get(f"http://127.0.0.1:{dep.port}/api/v2{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def test_invoice_pipeline_on_celery_with_two_workers_and_two_triggerers(
    tmp_path: Path, docify_emulator: DocifyEmulator, redis_url: str
) -> None:
    started = time.monotonic()
    docify_emulator.inject(Fault("stream", "slow_events", interval=EVENT_INTERVAL, key=INVOICE_KEY, times=None))
    inbox, out, db, home = tmp_path / "inbox", tmp_path / "out", tmp_path / "results.db", tmp_path / "home"
    make_sample_invoices(inbox, DOCUMENTS)
    connections = {
        "docify_invoices": {"conn_type": "docify", "host": docify_emulator.base_url, "password": INVOICE_KEY},
        "docify_results_db": {"conn_type": "sqlite", "host": str(db)},
    }
    env = {
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_url}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{redis_url}/1",
        "AIRFLOW__CORE__PARALLELISM": "16",
        # The REST API without a login (task instances and jobs are read from it).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    components: list[str | Component] = [
        "api-server",
        "scheduler",
        "dag-processor",
        *(triggerer(home, name, capacity=TRIGGERER_CAPACITY) for name in TRIGGERERS),
        *(celery_worker(home, name, concurrency=WORKER_CONCURRENCY) for name in WORKERS),
    ]
    with running_deployment(
        home,
        dags_folder=ROOT / "example_dags",
        connections=connections,
        env=env,
        executor="CeleryExecutor",
        components=components,
    ) as dep:
        for name in WORKERS:
            dep.wait_for_log(name, f"{name}@")
            dep.wait_for_log(name, " ready.")
        dep.wait_for_dag(DAG_ID)
        run_id = dep.trigger(DAG_ID, {"input_dir": str(inbox), "output_dir": str(out)})
        state = dep.wait_for_run(DAG_ID, run_id, timeout=300)
        tis = api(dep, f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
        jobs = api(dep, "/jobs?job_type=TriggererJob&limit=100")["jobs"]
        logs = dep.read_logs()
    elapsed = time.monotonic() - started

    extracts = [ti for ti in tis if ti["task_id"] == "extract"]
    tasks_per_worker = Counter(ti["hostname"] for ti in extracts)
    # Each mapped task runs twice on a worker: up to the deferral, then to finish with the trigger's event.
    executions = {name: workloads_run(dep.logs / f"{name}.log", "extract") for name in WORKERS}
    triggerer_of_job = {str(job["id"]): job["hostname"] for job in jobs}
    trigger_logs = sorted((home / "logs").rglob("task_id=extract/*/attempt=1.log.trigger.*.log"))
    # attempt=1.log.trigger.<triggerer job id>.log: one file per (task, triggerer that held its stream).
    streams_per_triggerer = Counter(triggerer_of_job.get(p.name.split(".")[-2], p.name) for p in trigger_logs)
    runs_billed = docify_emulator.runs_started(INVOICE_KEY)
    ran_on = dict(sorted(tasks_per_worker.items()))
    held_by = dict(sorted(streams_per_triggerer.items()))
    executed = {name: counts.total() for name, counts in executions.items()}
    print(
        f"\ncelery deployment: {len(extracts)} documents, workers {ran_on} (task executions before and after "
        f"the deferral: {executed}), triggerers {held_by}, {runs_billed} runs billed, DAG run {state}, "
        f"{elapsed:.1f} s including start-up"
    )

    context = f"tasks: {[(t['task_id'], t['map_index'], t['state'], t['hostname']) for t in tis]}\nlogs in {home}"
    assert state == "success", context
    assert len(extracts) == DOCUMENTS and all(ti["state"] == "success" for ti in extracts), context
    assert all(ti["try_number"] == 1 for ti in extracts), f"no retries expected: {context}"
    stored = landed_invoice_rows(db, inbox, out, DOCUMENTS)
    on_disk = sorted(p for p in (out / "attachments").rglob("*") if p.is_file())
    assert on_disk == sorted(stored), "each attachment once, and nothing else"
    assert runs_billed == DOCUMENTS, "one paid run per document, none twice"
    # Both workers ran mapped tasks, and nothing ran anywhere else.
    assert set(tasks_per_worker) == set(WORKERS), context
    assert {ti["hostname"] for ti in tis} <= set(WORKERS), context
    # ... as their own logs say too: each mapped task executed twice in all, the last time where it says it ran.
    assert sum(executions.values(), Counter()) == Counter({i: 2 for i in range(DOCUMENTS)}), executions
    assert all(executions[ti["hostname"]][ti["map_index"]] for ti in extracts), executions
    # Every stream was held by exactly one triggerer (no takeover), and both triggerers held some.
    # Every stream was followed by exactly one triggerer. A trigger may move to the other triggerer when
    # its first one misses a heartbeat (a loaded 2-core machine does): Airflow's own takeover. Then the
    # other log of that task must show no second stream (the restart guard: no second run request).
    logs_per_task: dict[str, list[Path]] = {}
    for path in trigger_logs:
        logs_per_task.setdefault(path.parent.name, []).append(path)
    assert len(logs_per_task) == DOCUMENTS, f"a trigger log per mapped task: {trigger_logs}"
    for task_logs in logs_per_task.values():
        texts = [path.read_text(errors="replace") for path in task_logs]
        streamed = [path for path, text in zip(task_logs, texts) if "Docify stream START: session" in text]
        assert len(streamed) == 1, f"one stream per mapped task: {task_logs}"
        assert "Docify stream COMPLETE" in streamed[0].read_text(errors="replace"), streamed[0]
    assert set(streams_per_triggerer) == set(TRIGGERERS), f"{streams_per_triggerer}; jobs {jobs}"
    assert all(n <= TRIGGERER_CAPACITY for n in streams_per_triggerer.values())
    assert INVOICE_KEY not in logs, "the API key reached a log file"
