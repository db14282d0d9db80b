"""One deployment for the human-in-the-loop deployment tests, shared by those that follow one another.

Starting a deployment (a copy of the migrated DB, four Airflow processes, the API healthy, the DAG
file parsed) costs 10 to 20 s of a 2-core machine, about as much as a test's own part (a run up to
its form, the answer, the end); the eight HITL deployment tests started eight of them. Now the
tests ``tests/deployment/conftest.py`` hands one ``HitlDeployment`` to run one after another on a
pytest worker; it is stopped when the worker's next test is not one of them.

What a test checks stays its own: each gets a fresh emulator (``run``: a new ``DifyEmulator`` or
``DifyOpenAPIEmulator`` with the test's options, on the port the deployment's connections name)
and its own DAG run, so the runs bought, the form posts and the requests it counts are its run's
only. A run the test leaves unfinished (a failed test) is failed when the test ends, so that none
of its tasks calls the next test's emulator.

The login is on (SimpleAuthManager with a password file): ``reviewer`` (role ``user``: may act on
DAGs, not administer) signs in in the browser tests, and the helpers' REST calls go as ``admin``.

``HitlRun`` (the handles on one triggered run: its task instance, its request, the answer, the
emulator's form posts) and the HITL DAG ids are here too, apart from ``tests/deployment.py``: that
file starts and stops Airflow processes for every deployment test, these know one DAG file's runs.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.deployment import ROOT, Deployment, Timeline, api, running_deployment, task_xcom, trigger_dag

REVIEWER = "reviewer"
ADMIN = "admin"
#: Task states after which a task of a run no longer calls the emulator.
_FINAL = {"success", "failed", "skipped", "upstream_failed", "removed", None}


# --- a triggered run with a paused Dify run waiting for a person -------------------------------------

_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?)(Z|[+-]\d\d:?\d\d)?")


def log_time(line: str) -> datetime | None:
    """When a log line was written: a JSON record's ``timestamp``, else the line's first ISO time (UTC
    when it names no zone); None when it has none."""
    found = re.search(r'"timestamp":\s*"([^"]+)"', line)
    match = _LOG_TIME.search(found.group(1) if found else line)
    if match is None:
        return None
    zone = match.group(2) or "+00:00"
    zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(match.group(1).replace(",", ".").replace(" ", "T") + zone)
    except ValueError:
        return None


HITL_DAG_FILE = ROOT / "tests" / "dags" / "dify_hitl.py"
HITL_DAG_ID, HITL_TASK_ID, HITL_RECORD_TASK_ID = "dify_hitl", "review", "record"
HITL_TWO_FORMS_DAG_ID = "dify_hitl_two_forms"
HITL_BLOCKING_DAG_ID = "dify_hitl_blocking"
#: ``DifyRunAppOperator`` on the account API's one-form app: served by the OpenAPI emulator.
HITL_ACCOUNT_DAG_ID = "dify_hitl_account"


@dataclass
class HitlRun:
    """Handles on a triggered ``dify_hitl`` run: the emulator, the deployment, the run id, the clock."""

    emu: Any
    dep: Deployment
    run_id: str
    timeline: Timeline
    dag_id: str = HITL_DAG_ID
    task_id: str = HITL_TASK_ID
    #: The credential the task's connection presents (the app key; the account token on the account API).
    key: str = ""

    def runs_bought(self) -> int:
        """Runs the emulator started with this run's credential."""
        return int(self.emu.runs_started(key=self.key))

    @property
    def ti_path(self) -> str:
        return f"/dags/{self.dag_id}/dagRuns/{self.run_id}/taskInstances/{self.task_id}"

    def task_instance(self, task_id: str | None = None) -> dict[str, Any]:
        """The task instance (default: the Dify task), or {} while the API cannot answer."""
        path = f"/dags/{self.dag_id}/dagRuns/{self.run_id}/taskInstances/{task_id or self.task_id}"
        return api(self.dep, "GET", path) or {}

    def ended(self, task_id: str | None = None) -> dict[str, Any] | None:
        """The task instance (default: the Dify task) once it succeeded or failed, else None."""
        ti = self.task_instance(task_id)
        return ti if ti.get("state") in ("success", "failed") else None

    def waiting_for_answer(self) -> dict[str, Any] | None:
        """The task instance once it is deferred on its human-input trigger and the scheduler has
        handled the executor event of the worker run that deferred it there.

        Before that a REST answer races the scheduler: Airflow 3.3 resumes the task straight from
        the answer (state scheduled, then queued), and the executor event of the worker that just
        deferred, handled after that, can find the task "changed externally" and fail the try
        (apache/airflow#67287). A person is never that fast (the window is one scheduler loop);
        a script answering the moment the request appears can be.

        Handled means: a "TaskInstance Finished" line of the task in the scheduler's log stamped
        after the last deferral in its task logs. Not a count of such lines per worker run: the
        executor's event buffer is keyed by try, so two deferrals of one try that end within one
        busy scheduler loop (the stream's re-attach, then its form) leave one event and one line.
        """
        ti = self.task_instance()
        trigger = ti.get("trigger") or {}
        if ti.get("state") != "deferred" or "HumanInputTrigger" not in str(trigger.get("classpath")):
            return None
        folder = self.dep.home / "logs" / f"dag_id={self.dag_id}" / f"run_id={self.run_id}" / f"task_id={self.task_id}"
        deferred = [
            stamp
            for p in folder.glob("attempt=*.log")
            for line in p.read_text(errors="replace").splitlines()
            if "Pausing task as DEFERRED" in line and (stamp := log_time(line)) is not None
        ]
        with contextlib.suppress(OSError):
            scheduler = (self.dep.logs / "scheduler.log").read_text(errors="replace")
            finished = f"TaskInstance Finished: dag_id={self.dag_id}, task_id={self.task_id}, run_id={self.run_id},"
            handled = [stamp for line in scheduler.splitlines() if finished in line and (stamp := log_time(line))]
            return ti if deferred and handled and max(handled) > max(deferred) else None
        return None

    def externally_changed_tries(self) -> int:
        """Tries of the Dify task the scheduler failed as "changed externally" (apache/airflow#67287).

        Airflow 3.3 resumes a deferred task as soon as its event arrives; when the scheduler handles
        the executor event of the worker that deferred only after that (a busy machine: seconds),
        it finds the task queued or running again and fails the try. The DAG's ``retries=3`` covers
        it: the next try re-attaches to the same Dify run (nothing is sent again).
        """
        with contextlib.suppress(OSError):
            text = (self.dep.logs / "scheduler.log").read_text(errors="replace")
            return sum(
                1
                for line in text.splitlines()
                if "finished with state success, but the task instance's state attribute is" in line
                and f"{self.dag_id}.{self.task_id} {self.run_id} " in line
            )
        return 0

    def hitl_detail(self) -> dict[str, Any] | None:
        """The Dify task's human-in-the-loop request (``GET .../{task}/-1/hitlDetails``), None while none."""
        detail = api(self.dep, "GET", f"{self.ti_path}/-1/hitlDetails")
        return detail if isinstance(detail, dict) else None

    def pending_requests(self) -> list[dict[str, Any]]:
        """The run's unanswered requests from the list endpoint (what the Required Actions page lists)."""
        path = f"/dags/{self.dag_id}/dagRuns/{self.run_id}/hitlDetails"
        listed = api(self.dep, "GET", path, params={"response_received": "false"}) or {}
        return list(listed.get("hitl_details") or [])

    def answer(self, option: str, params: dict[str, Any]) -> Any:
        """Answer the request as the Required Actions page does (``PATCH .../hitlDetails``)."""
        import httpx

        response = httpx.patch(
            f"http://127.0.0.1:{self.dep.port}/api/v2{self.ti_path}/-1/hitlDetails",
            json={"chosen_options": [option], "params_input": params},
            headers=self.dep.headers,
            timeout=10,
        )
        if not response.is_success:
            raise AssertionError(f"PATCH hitlDetails answered {response.status_code}: {response.text}")
        return response.json()

    def xcom(self, task_id: str | None = None, key: str = "return_value") -> Any:
        return task_xcom(self.dep, self.dag_id, self.run_id, task_id or self.task_id, key)

    def clear(self) -> Any:
        """Clear the Dify task as the UI's Clear does (``POST /dags/{dag}/clearTaskInstances``, not a dry
        run, whatever its state): Airflow ends its wait and starts its next try."""
        body = {
            "dry_run": False,
            "task_ids": [self.task_id],
            "dag_run_id": self.run_id,
            "only_failed": False,
            "include_downstream": False,
        }
        cleared = api(self.dep, "POST", f"/dags/{self.dag_id}/clearTaskInstances", json=body)
        if not cleared or not cleared.get("task_instances"):
            raise AssertionError(f"clearTaskInstances cleared nothing: {cleared}")
        return cleared

    def form_posts(self) -> int:
        """Answers the emulator's forms accepted (``POST /v1/form/human_input/{token}``, on the account API
        ``.../human-input-forms/{token}:submit``, answered 200)."""
        return self._form_posts(200)

    def refused_form_posts(self) -> int:
        """Answers refused as already given (412): a second resume of the task posting it again."""
        return self._form_posts(412)

    def _form_posts(self, status: int) -> int:
        return sum(
            1
            for r in self.emu.requests
            if r.endpoint in ("form", "form_submit") and r.method == "POST" and r.status == status
        )

    def task_log(self) -> str:
        """Every task and trigger log of the Dify task in this run (all tries)."""
        folder = self.dep.home / "logs" / f"dag_id={self.dag_id}" / f"run_id={self.run_id}" / f"task_id={self.task_id}"
        return "\n".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*.log")))


# --- one deployment for the HITL tests ----------------------------------------------------------------


def fixed_port() -> int:
    """A free loopback port below the ephemeral range (32768 and up on Linux): an emulator binds it
    again for each test, and no outgoing connection of another process takes it in between."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


class HitlDeployment:
    """A deployment serving ``tests/dags/dify_hitl.py``, its connections pointing at two fixed ports
    (``dify_human`` and ``dify_two_forms``: the Dify emulator; ``dify_account``: the OpenAPI one)."""

    def __init__(self, dep: Deployment, dify_port: int, openapi_port: int, password: str, startup: float) -> None:
        self.dep = dep
        self.ports = {"dify": dify_port, "openapi": openapi_port}
        #: The password ``reviewer`` signs in with (a test-only secret: it must be in no log).
        self.password = password
        #: Seconds the deployment took to come up; when it was up; how many tests it has served.
        self.startup, self.started, self.tests = startup, time.monotonic(), 0

    @contextlib.contextmanager
    def run(self, dag_id: str = HITL_DAG_ID, *, emulator: Mapping[str, Any] | None = None) -> Iterator[HitlRun]:
        """A fresh emulator (``emulator``: ``DifyEmulator`` options, e.g. ``form_expiry_seconds``) and
        one triggered run of ``dag_id`` (``dify_hitl``: one form; ``dify_hitl_two_forms``: two, the
        first asked in Airflow, the second answered in Dify; ``dify_hitl_blocking``: one form, run
        blocking; ``dify_hitl_account``: one form, the account API on the OpenAPI emulator)."""
        from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY, TWO_FORMS_APP_KEY, DifyEmulator
        from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, DifyOpenAPIEmulator

        timeline = Timeline("task log")
        self.tests += 1
        shared = (
            f"up {timeline.start - self.started:.0f} s before" if self.tests > 1 else f"started in {self.startup:.1f} s"
        )
        timeline.mark(f"deployment up (api-server, scheduler, dag-processor, triggerer; {shared}, test {self.tests})")
        options: dict[str, Any] = {"ping_interval": 1.0, "idle_close_seconds": 300.0, **(emulator or {})}
        if dag_id == HITL_ACCOUNT_DAG_ID:
            emu_cls, conn_id, port, key = DifyOpenAPIEmulator, "dify_account", self.ports["openapi"], ACCOUNT_TOKEN
        else:
            emu_cls, conn_id, port = DifyEmulator, "dify_human", self.ports["dify"]
            key = TWO_FORMS_APP_KEY if dag_id == HITL_TWO_FORMS_DAG_ID else HUMAN_INPUT_APP_KEY
        with emu_cls(port=port, **options) as emu:
            host = json.loads(self.dep.env[f"AIRFLOW_CONN_{conn_id.upper()}"])["host"]
            assert emu.base_url == host, f"the connection {conn_id} names {host}, the emulator is at {emu.base_url}"
            run_id = trigger_dag(self.dep, dag_id, "hitl")
            timeline.mark(f"DAG run {dag_id}/{run_id} triggered")
            hitl = HitlRun(emu=emu, dep=self.dep, run_id=run_id, timeline=timeline, dag_id=dag_id, key=key)
            try:
                yield hitl
            finally:
                self._end(hitl)

    def _end(self, hitl: HitlRun) -> None:
        """Fail the run if it is still going and wait (30 s at most) until none of its tasks runs."""
        path = f"/dags/{hitl.dag_id}/dagRuns/{hitl.run_id}"
        if self.dep.run_state(hitl.dag_id, hitl.run_id) in ("success", "failed"):
            return
        api(self.dep, "PATCH", path, json={"state": "failed"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(ti["state"] in _FINAL for ti in self.dep.task_states(hitl.dag_id, hitl.run_id)):
                return
            time.sleep(0.5)

    def close(self) -> None:
        self.dep.stop_all()


@contextlib.contextmanager
def hitl_deployment(home: Path) -> Iterator[HitlDeployment]:
    """Start a ``HitlDeployment`` in ``home`` (its DAG folder, Airflow home and password file there)."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / HITL_DAG_FILE.name).write_bytes(HITL_DAG_FILE.read_bytes())
    airflow_home = home / "home"
    airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = {REVIEWER: secrets.token_urlsafe(12), ADMIN: secrets.token_urlsafe(12)}
    passwords_file = airflow_home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    settings = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__SIMPLE_AUTH_MANAGER__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{REVIEWER}:user,{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
    }
    dify_port, openapi_port = fixed_port(), fixed_port()
    while openapi_port == dify_port:
        openapi_port = fixed_port()
    from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY, TWO_FORMS_APP_KEY
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN

    # The emulators' base URLs (``emu.base_url``, checked in ``run``): Dify's includes /v1.
    dify_url, openapi_url = f"http://127.0.0.1:{dify_port}/v1", f"http://127.0.0.1:{openapi_port}/openapi/v1"
    connections: dict[str, dict[str, Any]] = {
        "dify_human": {"conn_type": "dify", "host": dify_url, "password": HUMAN_INPUT_APP_KEY},
        "dify_two_forms": {"conn_type": "dify", "host": dify_url, "password": TWO_FORMS_APP_KEY},
        "dify_account": {"conn_type": "dify_openapi", "host": openapi_url, "password": ACCOUNT_TOKEN},
    }
    started = time.monotonic()
    with running_deployment(airflow_home, dags_folder=dags, connections=connections, env=settings) as dep:
        dep.login(ADMIN, passwords[ADMIN])
        yield HitlDeployment(dep, dify_port, openapi_port, passwords[REVIEWER], time.monotonic() - started)
