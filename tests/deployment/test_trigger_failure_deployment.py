"""No run left behind when the triggerer fails a trigger (``__fail__``), on a real deployment.

``dag.test()`` fails a task outright when its inline trigger raises, so Airflow's own route for a
trigger the triggerer cannot run (resume the task on a worker with ``next_method="__fail__"``)
needs a real scheduler, triggerer, dag processor and API server. Here the triggerer cannot import
the provider's triggers (its ``PYTHONPATH`` puts a ``docify_provider`` package first whose
``triggers`` raises ``ImportError``; the other components import the real one): Airflow reports
the import error as a trigger failure.

* ``account`` (account API): the worker started the run and deferred; on ``__fail__`` it follows
  the run to its end on the worker and the task succeeds with the run's outputs, one run bought.
* ``service`` (Service API) and ``docify``: the trigger would have sent the run; its restart marker
  still says ``deferred``, so the task fails saying nothing was sent, and the service saw no run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from docify_provider.testing import DocifyEmulator
from docify_provider.testing.dify import DifyEmulator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, LONG_APP_ID, DifyOpenAPIEmulator
from docify_provider.testing.keys import SUMMARY_KEY
from tests.deployment import ROOT, running_deployment, task_xcom, trigger_dag, triggerer, wait_task_end

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(420)]

DAG_FILE = ROOT / "tests" / "dags" / "trigger_failure.py"
DAG_ID = "trigger_failure"
TEXT_KEY = "app-EmuTextWorkflow0000000001"
BROKEN = "this triggerer cannot import the provider triggers"


def test_a_triggerer_that_cannot_load_the_trigger_leaves_no_run_behind(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    home = tmp_path / "home"
    home.mkdir()
    stub = tmp_path / "stub" / "docify_provider"
    (stub / "triggers").mkdir(parents=True)
    # Airflow reads the provider's info at start-up (it needs __version__); only the triggers break.
    (stub / "__init__.py").write_text('"""Shadows the provider in the triggerer only."""\n__version__ = "0"\n')
    (stub / "triggers" / "__init__.py").write_text(f"raise ImportError({BROKEN!r})\n")
    broken = triggerer(home, "triggerer")
    path = os.pathsep.join((str(stub.parent), broken.env["PYTHONPATH"]))  # the stub first
    broken = dataclasses.replace(broken, env={**broken.env, "PYTHONPATH": path})
    with (
        DifyEmulator(ping_interval=1.0, idle_close_seconds=300.0) as service,
        DifyOpenAPIEmulator(ping_interval=1.0, idle_close_seconds=300.0) as account,
        DocifyEmulator() as docify,
    ):
        connections = {
            "dify_text": {"conn_type": "dify", "host": service.base_url, "password": TEXT_KEY},
            "dify_openapi_default": {"conn_type": "dify_openapi", "host": account.base_url, "password": ACCOUNT_TOKEN},
            "docify_summary": {"conn_type": "docify", "host": docify.base_url, "password": SUMMARY_KEY},
        }
        components = ("api-server", "scheduler", "dag-processor", broken)
        env = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
        with running_deployment(home, dags_folder=dags, connections=connections, env=env, components=components) as dep:
            run_id = trigger_dag(dep, DAG_ID, "trigger_failure")
            account_ti = wait_task_end(dep, DAG_ID, run_id, "account", timeout=240)
            service_ti = wait_task_end(dep, DAG_ID, run_id, "service", timeout=120)
            docify_ti = wait_task_end(dep, DAG_ID, run_id, "docify", timeout=120)
            xcom = task_xcom(dep, DAG_ID, run_id, "account")
            logs = "\n".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log"))
            triggerer_log = (home / "component-logs" / "triggerer.log").read_text(errors="replace")
    assert BROKEN in triggerer_log, triggerer_log[-3000:]
    # account API: the run the worker started is followed to its end on the worker
    assert account_ti["state"] == "success", (account_ti, logs[-4000:])
    assert account.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1, "one run bought"
    (run,) = account.runs
    assert run.status == "succeeded"
    assert xcom["workflow_run_id"] == run.id and xcom["status"] == "succeeded" and xcom["outputs"]
    assert (
        f"The Dify trigger failed (ImportError: {BROKEN}) after Dify run {run.id} was started; "
        "following the run to its end on this worker" in logs
    ), logs[-4000:]
    # Service API: nothing was sent, and the error says so
    assert service_ti["state"] == "failed", service_ti
    assert service.runs_started() == 0
    assert "The Dify trigger failed before it sent anything" in logs and "nothing was sent to Dify" in logs
    assert "its restart marker still says 'deferred'" in logs
    # Docify: the same, from its own marker
    assert docify_ti["state"] == "failed", docify_ti
    assert docify.runs_started() == 0
    assert "The Docify trigger failed before it sent anything" in logs and "nothing was sent to Docify" in logs
    assert "may have reached" not in logs
    assert ACCOUNT_TOKEN not in logs and TEXT_KEY not in logs and SUMMARY_KEY not in logs
