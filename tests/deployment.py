"""A real Airflow deployment for tests: scheduler, triggerer, dag processor and API server as
separate processes (LocalExecutor, SQLite), configured only through environment variables.

Used by the deployment tests; kept apart from them so that later tests (triggerer restarts, load)
can start, stop and restart single components.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def json_output(stdout: str) -> Any:
    """The JSON an ``airflow ... -o json`` command printed; warnings may precede it on stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    def __init__(self, home: Path, *, dags_folder: Path, connections: dict[str, dict[str, Any]]):
        self.home = home
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SIMPLE_AUTH_MANAGER__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for conn_id, conn in connections.items():
            self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = home / "component-logs"

    def airflow(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self, component: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{component}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[component] = subprocess.Popen(
            [str(BIN / "airflow"), component],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, component: str, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.procs.pop(component, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def wait_for_api(self, timeout: float = 120) -> None:
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

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.airflow("dags", "list", "-o", "json", check=False)
            if out.returncode == 0 and any(d.get("dag_id") == dag_id for d in json_output(out.stdout) or []):
                return
            time.sleep(2)
        raise RuntimeError(f"DAG {dag_id} was not parsed; see {self.logs / 'dag-processor.log'}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run_id = f"deploytest__{int(time.time() * 1000)}"
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "-c", json.dumps(conf))
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        out = self.airflow("dags", "list-runs", dag_id, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        for run in json_output(out.stdout) or []:
            if run.get("run_id") == run_id:
                return str(run.get("state"))
        return None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(3)
        raise TimeoutError(f"DAG run {run_id} still {state} after {timeout}s; logs in {self.logs}")

    def task_states(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out = self.airflow("tasks", "states-for-dag-run", dag_id, run_id, "-o", "json", check=False)
        return list(json_output(out.stdout) or [])

    def read_logs(self) -> str:
        """Every log the deployment wrote: component logs and task logs."""
        chunks = []
        for path in sorted(self.home.rglob("*.log")):
            with contextlib.suppress(OSError):
                chunks.append(path.read_text(errors="replace"))
        return "\n".join(chunks)

    def stop_all(self) -> None:
        for component in list(self.procs):
            self.stop(component)


@contextlib.contextmanager
def running_deployment(
    home: Path,
    *,
    dags_folder: Path,
    connections: dict[str, dict[str, Any]],
    env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """Migrate the DB and start every component; ``env`` adds settings all components get."""
    dep = Deployment(home, dags_folder=dags_folder, connections=connections)
    dep.env.update(env or {})
    dep.airflow("db", "migrate", timeout=300)
    try:
        for component in COMPONENTS:
            dep.start(component)
        dep.wait_for_api()
        yield dep
    finally:
        dep.stop_all()
