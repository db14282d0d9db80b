"""A real Airflow deployment for tests: scheduler, triggerer, dag processor and API server as
separate processes (LocalExecutor, SQLite by default), configured only through environment variables.

Used by the deployment tests; kept apart from them so that later tests (triggerer restarts, load)
can start, stop and restart single components. More than one instance of a component (two Celery
workers, two triggerers) runs as a ``Component`` with a name of its own: its own log file, pid file
and ``procs`` entry, and, with ``as_host``, its own hostname (what Airflow records in task instances
and jobs), as if each ran on a machine of its own. ``redis_server`` is a throwaway Celery broker.

The handles on a human-in-the-loop run (``HitlRun``, the HITL DAG ids) are in
``tests/hitl_deployment.py``, with the one deployment the HITL tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Environment variable that ``instance_hostname`` returns (set by ``as_host``).
HOSTNAME_VAR = "DOCIFY_DEPLOYMENT_HOSTNAME"


def instance_hostname() -> str:
    """``[core] hostname_callable`` of a process started with ``as_host``: the name it was given."""
    return os.environ[HOSTNAME_VAR]


def as_host(hostname: str) -> dict[str, str]:
    """Settings under which a process reports ``hostname`` as its host (task instances, jobs).

    Processes on one machine all report its name; these let the tests tell two workers (or two
    triggerers) apart the way an operator of a real multi-machine deployment does, from
    ``TaskInstance.hostname`` and ``Job.hostname``.
    """
    return {
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deployment.instance_hostname",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p),
        HOSTNAME_VAR: hostname,
    }


@dataclass
class Component:
    """A process of a deployment known by ``name`` (log file, ``procs`` key): ``airflow <command...>``
    with ``env`` on top of the deployment's settings."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


def celery_worker(home: Path, name: str, *, concurrency: int = 2) -> Component:
    """A Celery worker with Celery node name ``<name>@<host>`` that reports ``name`` as its hostname.

    It serves no logs (a second worker could not bind the log server port; the API server reads the
    task logs from the shared ``AIRFLOW_HOME``) and keeps its pid file apart from the other workers'.
    """
    return Component(
        name,
        (
            "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency),
            "--skip-serve-logs", "--without-mingle", "--without-gossip", "--pid", str(home / f"{name}.pid"),
        ),
        as_host(name),
    )  # fmt: skip


def triggerer(home: Path, name: str, *, capacity: int | None = None) -> Component:
    """A triggerer that reports ``name`` as its hostname, with its own pid file and no log server."""
    command = ["triggerer", "--skip-serve-logs", "--pid", str(home / f"{name}.pid")]
    if capacity is not None:
        command += ["--capacity", str(capacity)]
    return Component(name, tuple(command), as_host(name))


_TEMPLATE_DB: list[Path] = []


def _migrated_template(env: Mapping[str, str]) -> Path:
    """An ``airflow.db`` that ``airflow db migrate`` created, once per process (in a temporary home)."""
    if not _TEMPLATE_DB:
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="docify-deployment-db-"))
        settings = {k: v for k, v in env.items() if not k.startswith("AIRFLOW")}
        settings.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=settings, capture_output=True, check=True, timeout=300
        )
        _TEMPLATE_DB.append(home / "airflow.db")
    return _TEMPLATE_DB[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path,
        connections: dict[str, dict[str, Any]],
        executor: str = "LocalExecutor",
    ):
        self.home = home
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__API__PORT": str(self.port),
            # Ports of their own, so that deployments can run side by side (pytest-xdist workers).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            # One Fernet key for every component, as a real deployment has: Variables (a batch's ledger)
            # written by a task must be readable by the triggerer. Without it, components that each
            # make up a key read each other's Variables as ciphertext.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # Parsed once when found: a test's DAG files do not change while it runs (each re-parse is
            # a process of its own, every 30 s by default).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # No login: everyone is admin (the REST API helpers below need it; Airflow reads it under
            # [core] or [simple_auth_manager] depending on the line).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SIMPLE_AUTH_MANAGER__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for conn_id, conn in connections.items():
            self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = home / "component-logs"
        #: Sent with every ``api()`` call: a bearer token once a test has logged in (``login``).
        self.headers: dict[str, str] = {}

    def login(self, username: str, password: str) -> None:
        """Get a JWT for ``username`` (SimpleAuthManager's ``POST /auth/token``); ``api()`` sends it."""
        import httpx

        response = httpx.post(
            f"http://127.0.0.1:{self.port}/auth/token", json={"username": username, "password": password}, timeout=10
        )
        response.raise_for_status()
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def airflow(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self, component: str | Component) -> None:
        """Start ``airflow <component>`` (e.g. ``"triggerer"``), or a named ``Component`` (e.g. a second
        triggerer, a Celery worker), in a process group of its own; its output goes to ``<name>.log``."""
        spec = Component(component, (component,)) if isinstance(component, str) else component
        running = self.procs.get(spec.name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"{spec.name} is already running (pid {running.pid})")
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{spec.name}.log", "ab") as log:  # the child keeps its own descriptor
            self.procs[spec.name] = subprocess.Popen(
                [str(BIN / "airflow"), *spec.command],
                env={**self.env, **spec.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, component: str, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        self._stop([component], sig=sig, timeout=timeout)

    def _stop(self, names: Sequence[str], *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal the process groups of ``names`` at once, wait for them together, then SIGKILL what is left."""
        procs = [proc for name in names if (proc := self.procs.pop(name, None)) is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            # Also what a group leader that exited left behind (e.g. a Celery pool child, a task process).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def wait_for_log(self, name: str, text: str, timeout: float = 120) -> None:
        """Wait until the output of component ``name`` contains ``text`` (e.g. a worker's "ready.")."""
        path = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if text in path.read_text(errors="replace"):
                    return
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not log {text!r}; see {path}")

    def wait_for_api(self, timeout: float = 240) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            if self.procs["api-server"].poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"API server did not come up; see {self.logs / 'api-server.log'}")

    # Read and triggered through the REST API (``api``): milliseconds a call, where each ``airflow``
    # CLI call starts an interpreter and imports Airflow (seconds of CPU on a busy machine).

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if api(self, "GET", f"/dags/{dag_id}"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"DAG {dag_id} was not parsed; see {self.logs / 'dag-processor.log'}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run_id = f"deploytest__{int(time.time() * 1000)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        if not api(self, "POST", f"/dags/{dag_id}/dagRuns", json=body):
            raise RuntimeError(f"triggering {dag_id} failed; see {self.logs / 'api-server.log'}")
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        run = api(self, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return None if not run else str(run.get("state"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise TimeoutError(f"DAG run {run_id} still {state} after {timeout}s; logs in {self.logs}")

    def task_states(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        listed = api(self, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}) or {}
        return [
            {k: ti.get(k) for k in ("task_id", "map_index", "state", "try_number")}
            for ti in listed.get("task_instances") or []
        ]

    def migrate(self) -> None:
        """Create the metadata DB: a copy of one migrated in this process before (``airflow db migrate``
        takes seconds of CPU; a copy of its SQLite file is the same DB), else migrated now."""
        db = self.home / "airflow.db"
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in self.env:  # not the default SQLite file: migrate it
            self.airflow("db", "migrate", timeout=300)
            return
        template = _migrated_template(self.env)
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, db)

    def read_logs(self) -> str:
        """Every log the deployment wrote: component logs and task logs."""
        chunks = []
        for path in sorted(self.home.rglob("*.log")):
            with contextlib.suppress(OSError):
                chunks.append(path.read_text(errors="replace"))
        return "\n".join(chunks)

    def stop_all(self) -> None:
        self._stop(list(self.procs))


@contextlib.contextmanager
def redis_server(folder: Path, timeout: float = 30) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port, nothing persisted; yields its URL.

    Its output goes to ``folder/redis.log``; it is stopped (its process group killed) on exit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(folder / "redis.log", "ab") as log:
        proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not come up; see {folder / 'redis.log'}")
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextlib.contextmanager
def running_deployment(
    home: Path,
    *,
    dags_folder: Path,
    connections: dict[str, dict[str, Any]],
    env: dict[str, str] | None = None,
    executor: str = "LocalExecutor",
    components: Sequence[str | Component] = COMPONENTS,
) -> Iterator[Deployment]:
    """Migrate the DB and start every component (``api-server`` among them); ``env`` adds settings
    all components get."""
    dep = Deployment(home, dags_folder=dags_folder, connections=connections, executor=executor)
    dep.env.update(env or {})
    dep.migrate()
    try:
        for component in components:
            dep.start(component)
        dep.wait_for_api()
        yield dep
    finally:
        dep.stop_all()


def landed_invoice_rows(db: Path, inbox: Path, out: Path, documents: int) -> list[Path]:
    """Check the invoice pipeline's table has one row per document in ``inbox`` with its attachment
    stored once under ``out`` in a folder of its own; return the attachments' paths."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT source_file, invoice_number, attachment FROM docify_invoices").fetchall()
    assert sorted(r[0] for r in rows) == sorted(p.name for p in inbox.iterdir())
    assert all(r[1].startswith("INV-") for r in rows)
    stored = [Path(r[2]) for r in rows]
    assert all(p.is_file() and p.is_relative_to(out) for p in stored)
    assert len({p.parent for p in stored}) == documents, "mapped tasks must not share an attachment folder"
    return stored


# --- what the deployment tests observe with ---------------------------------------------------


class Timeline:
    """Named moments since the test started, printed at the end as the observed sequence."""

    def __init__(self, source: str = "log") -> None:
        self.start = time.monotonic()
        self.start_wall = time.time()
        self.source = source
        self.marks: list[tuple[float, str]] = []

    def mark(self, label: str, at: float | None = None) -> float:
        """Record ``label`` now, or at ``at`` (seconds since the epoch, e.g. a log record's timestamp)."""
        when = time.monotonic() - self.start if at is None else at - self.start_wall
        self.marks.append((when, label))
        if at is None:
            print(f"  [{when:6.1f}s] {label}", flush=True)
        return when

    def print_sequence(self) -> None:
        print(f"observed sequence (s since the test started; 'log:' = timestamp of a {self.source} record):")
        for when, label in sorted(self.marks):
            print(f"  [{when:6.1f}s] {label}")


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def api(dep: Deployment, method: str, path: str, **kwargs: Any) -> Any:
    """One REST API call (``/api/v2`` + path); the JSON answer, or None while the API cannot answer.

    The CLI takes seconds per call on a busy machine; the API answers in milliseconds, so a test
    sees state changes (and reports timings) to within its polling interval. The deployment must
    run with ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True`` (no login), or have logged in
    (``Deployment.login``: its token goes with every call).
    """
    import httpx

    extra_headers = kwargs.pop("headers", {})
    try:
        response = httpx.request(
            method,
            f"http://127.0.0.1:{dep.port}/api/v2{path}",
            timeout=10,
            headers={**dep.headers, **extra_headers},
            **kwargs,
        )
        if response.status_code == 401 and not dep.headers:
            # Airflow 3.1 wants a token even when everyone is admin: SimpleAuthManager hands one out
            # without credentials then (``GET /auth/token``); 3.2+ lets the call through.
            token = httpx.get(f"http://127.0.0.1:{dep.port}/auth/token", timeout=10)
            if token.is_success:
                dep.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                return api(dep, method, path, headers=extra_headers, **kwargs)
    except httpx.HTTPError:
        return None
    return response.json() if response.is_success else None


def trigger_dag(dep: Deployment, dag_id: str, prefix: str) -> str:
    """Trigger ``dag_id`` through the REST API once the dag processor has stored it; the run id
    (``<prefix>__<ms since the epoch>``)."""
    wait_until("the DAG to be parsed", lambda: api(dep, "GET", f"/dags/{dag_id}"), timeout=180)
    run_id = f"{prefix}__{int(time.time() * 1000)}"
    body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": {}}
    assert api(dep, "POST", f"/dags/{dag_id}/dagRuns", json=body), "triggering the DAG run failed"
    return run_id


def wait_task_end(dep: Deployment, dag_id: str, run_id: str, task_id: str, timeout: float) -> dict[str, Any]:
    """The task instance once it has failed, succeeded or is up for retry (read through the REST API)."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"

    def ended() -> dict[str, Any] | None:
        ti = api(dep, "GET", path)
        return ti if ti and ti.get("state") in ("failed", "success", "up_for_retry") else None

    ti: dict[str, Any] = wait_until("the task to end", ended, timeout=timeout)
    return ti


def task_xcom(dep: Deployment, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """The value of a task's XCom ``key``, read through the REST API (None while there is none).

    ``deserialize=true`` gives the value as the task pushed it; some Airflow lines hand it back as
    its JSON text, which is parsed here.
    """
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
    value = (api(dep, "GET", path, params={"deserialize": "true"}) or {}).get("value")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
