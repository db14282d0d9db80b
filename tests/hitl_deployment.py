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
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.deployment import (
    HITL_ACCOUNT_DAG_ID,
    HITL_DAG_FILE,
    HITL_DAG_ID,
    HITL_TWO_FORMS_DAG_ID,
    Deployment,
    HitlRun,
    Timeline,
    api,
    running_deployment,
    trigger_dag,
)

REVIEWER = "reviewer"
ADMIN = "admin"
#: Task states after which a task of a run no longer calls the emulator.
_FINAL = {"success", "failed", "skipped", "upstream_failed", "removed", None}


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
