"""Run real DAGs with ``dag.test()`` against the Docify emulator, and read back what they did.

Nothing is mocked: tasks run through Airflow's task runner and in-process Execution API on a
SQLite metadata database in a temporary ``AIRFLOW_HOME``; deferred tasks have their trigger run
in-process by ``dag.test()``; Docify is the emulator on 127.0.0.1.

Usage (fixtures are re-exported by the test modules)::

    def test_x(docify_conns):  # the conftest ``emulator`` + connections + Airflow DB
        with new_dag("x") as dag:
            DocifyRunScenarioOperator(task_id="run", inputs={...})
        run = run_dag(dag)
        assert run.state("run") == "success"
        assert run.xcom("run")["is_success"]
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from docify_provider.compat import airflow_version
from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.keys import BUNDLE_KEY, INVOICE_KEY, SUMMARY_KEY

#: (major, minor) of the Airflow the suite runs on; the matrix runs it on 3.3 and on 3.0.
AIRFLOW_LINE = airflow_version()

#: Airflow 3.0's ``dag.test()`` runs triggers in-process without Execution API access, so a trigger
#: cannot read or write XComs there (a real 3.0 triggerer can: tests/deployment/test_triggerer_restart.py).
TRIGGERS_HAVE_XCOM_IN_DAG_TEST = AIRFLOW_LINE >= (3, 1)

needs_task_state_store = pytest.mark.skipif(
    AIRFLOW_LINE < (3, 3),
    reason="task_state_store is Airflow 3.3+; before it the state is a Variable (tests/core/test_state_fallback.py)",
)
needs_trigger_xcom_in_dag_test = pytest.mark.skipif(
    not TRIGGERS_HAVE_XCOM_IN_DAG_TEST,
    reason="Airflow 3.0's dag.test() gives in-process triggers no XCom access; "
    "the restart guard runs on a real 3.0 triggerer in tests/deployment/test_triggerer_restart.py",
)

#: Connection ids registered for every test: one per built-in emulator scenario.
CONN_IDS = {
    "docify_default": INVOICE_KEY,
    "docify_invoice": INVOICE_KEY,
    "docify_summary": SUMMARY_KEY,
    "docify_bundle": BUNDLE_KEY,
}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def console_text(capfd: pytest.CaptureFixture[str]) -> str:
    """What ``dag.test()`` printed so far, without colour codes.

    Airflow 3.0 prints tracebacks through rich with every token coloured, which would split the
    messages a test looks for; 3.1+ prints them plain.
    """
    return _ANSI.sub("", capfd.readouterr().out)


def without_mask_requests(text: str) -> str:
    """``text`` without Airflow 3.0's debug lines that echo each MaskSecret request (key included).

    Airflow 3.0's task runner logs every masking request it sends its supervisor at debug level,
    value and all; that is Airflow's output, not the provider's (``test_secrets`` checks it stays
    at debug), so tests that look for the key in what the provider logged drop those lines.
    """
    return "\n".join(line for line in text.splitlines() if "MaskSecret(value=" not in line)


def conn_json(base_url: str, key: str, conn_type: str = "docify", **extra: Any) -> str:
    """A docify (or dify) connection as ``AIRFLOW_CONN_<ID>`` JSON (host = base URL, password = key)."""
    # Few retries: tests inject faults on purpose and should not wait through long backoffs.
    extras = {"max_retries": 2, "idle_timeout": 30, **extra}
    return json.dumps({"conn_type": conn_type, "host": base_url, "password": key, "extra": extras})


def configure_airflow(home: Path) -> None:
    """Point Airflow at ``home`` (SQLite DB, empty dags folder) and create the schema.

    Works whether or not ``airflow`` was already imported by an earlier test module: the settings
    are re-read and the ORM re-created after the environment changed.
    """
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )
    from airflow import settings
    from airflow.utils import db

    settings.configure_vars()
    settings.reconfigure_orm()
    db.initdb()


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A migrated Airflow metadata DB in a temporary AIRFLOW_HOME, for the whole session."""
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("AIRFLOW")]:
            patch.setenv(name, os.environ[name])  # restored (or removed) at the end of the session
        for name in ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__DAGS_FOLDER"):
            patch.setenv(name, os.environ.get(name, ""))
        configure_airflow(home)
        yield home


@pytest.fixture
def docify_conns(emulator: DocifyEmulator, airflow_env: Path, monkeypatch: pytest.MonkeyPatch) -> DocifyEmulator:
    """Connections ``CONN_IDS`` pointing at the test's emulator (the ``emulator`` fixture of conftest)."""
    for conn_id, key in CONN_IDS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(emulator.base_url, key))
    return emulator


def new_dag(name: str, **kwargs: Any) -> Any:
    """An ``airflow.sdk.DAG`` with a unique id (``<name>_<hex>``), no schedule."""
    from airflow.sdk import DAG

    kwargs.setdefault("schedule", None)
    kwargs.setdefault("start_date", datetime(2024, 1, 1, tzinfo=timezone.utc))
    kwargs.setdefault("catchup", False)
    kwargs.setdefault("default_args", {"retries": 0, "retry_delay": timedelta(seconds=0)})
    return DAG(f"{name}_{uuid.uuid4().hex[:8]}", **kwargs)


@dataclass
class DagRunOutcome:
    """What a ``dag.test()`` run left in the metadata DB."""

    dag_id: str
    run_id: str
    dag_state: str

    def _tis(self) -> list[Any]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            tis = list(
                session.scalars(
                    select(TaskInstance).where(TaskInstance.dag_id == self.dag_id, TaskInstance.run_id == self.run_id)
                )
            )
            session.expunge_all()
        return tis

    def ti(self, task_id: str, map_index: int = -1) -> Any:
        for ti in self._tis():
            if ti.task_id == task_id and ti.map_index == map_index:
                return ti
        raise KeyError(f"no task instance {task_id}[{map_index}]")

    def state(self, task_id: str, map_index: int = -1) -> str | None:
        state = self.ti(task_id, map_index).state
        return None if state is None else str(getattr(state, "value", state))

    def states(self) -> dict[tuple[str, int], str | None]:
        return {(ti.task_id, ti.map_index): None if ti.state is None else str(ti.state) for ti in self._tis()}

    def try_number(self, task_id: str, map_index: int = -1) -> int:
        return int(self.ti(task_id, map_index).try_number)

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == self.dag_id,
                    XComModel.run_id == self.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                    XComModel.map_index == map_index,
                )
            ).first()
            return None if row is None else XComModel.deserialize_value(row)

    def asset_events(self) -> list[tuple[str, dict[str, Any]]]:
        """(asset URI, event extra) of every asset event this run's tasks emitted."""
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(AssetModel.uri, AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetEvent.source_dag_id == self.dag_id, AssetEvent.source_run_id == self.run_id)
            ).all()
        return [(uri, dict(extra or {})) for uri, extra in rows]


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None) -> DagRunOutcome:
    """Register ``dag`` in the metadata DB and run it once with ``dag.test()``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    # dag.test() needs the DAG serialized in the DB; our DAGs live in test code, not in a dags
    # folder the bundle sync would parse, so write it the way the dag processor would.
    with create_session() as session:
        if hasattr(LazyDeserializedDAG, "from_dag"):  # Airflow 3.1+
            update_dag_parsing_results_in_db(
                "dags-folder",
                None,
                [LazyDeserializedDAG.from_dag(dag)],
                {},
                None,
                set(),
                session=session,
                files_parsed=set(),
            )
        else:  # Airflow 3.0 takes the scheduler's DAG, as dag.test() builds it, and no parse-time arguments
            from airflow.serialization.serialized_objects import SerializedDAG

            scheduler_dag = SerializedDAG.deserialize_dag(SerializedDAG.serialize_dag(dag))
            update_dag_parsing_results_in_db("dags-folder", None, [scheduler_dag], {}, set(), session=session)
    dag_run = dag.test(run_conf=run_conf)
    state = getattr(dag_run.state, "value", dag_run.state)
    return DagRunOutcome(dag_id=dag.dag_id, run_id=dag_run.run_id, dag_state=str(state))


def set_xcom(key: str, value: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> None:
    """Store a task instance's XCom as the line's Execution API stores what a task (or trigger) pushed.

    3.2+: ``XComModel.set(..., serialize=False)``; 3.1: the API inserts the row itself (its ``set()``
    would JSON-encode the value a second time); 3.0: ``set()`` encodes it, as its API does.
    """
    import inspect

    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    ident = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "map_index": map_index}
    if "serialize" in inspect.signature(XComModel.set).parameters:
        XComModel.set(key, value, serialize=False, **ident)
    elif AIRFLOW_LINE < (3, 1):
        XComModel.set(key, value, **ident)
    else:
        with create_session() as session:
            dag_run_id = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
            session.execute(
                delete(XComModel).where(*(getattr(XComModel, k) == v for k, v in ident.items()), XComModel.key == key)
            )
            session.add(XComModel(dag_run_id=dag_run_id, key=key, value=value, **ident))


def run_trigger_for(outcome: DagRunOutcome, task_id: str, trigger: Any, map_index: int = -1) -> Any:
    """Run ``trigger`` in-process the way ``dag.test()`` does, as the task instance ``task_id`` of ``outcome``.

    Returns the first ``TriggerEvent`` (or None).
    """
    from uuid import UUID

    from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceSDK
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    ti = outcome.ti(task_id, map_index)
    sdk_ti = TaskInstanceSDK(
        id=UUID(str(ti.id)),
        task_id=ti.task_id,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index,
        dag_version_id=UUID(str(ti.dag_version_id)),
    )
    return InProcessTestSupervisor.run_trigger_in_process(trigger=trigger, ti=sdk_ti)


__all__ = [
    "AIRFLOW_LINE",
    "CONN_IDS",
    "TRIGGERS_HAVE_XCOM_IN_DAG_TEST",
    "DagRunOutcome",
    "airflow_env",
    "configure_airflow",
    "conn_json",
    "console_text",
    "docify_conns",
    "needs_task_state_store",
    "needs_trigger_xcom_in_dag_test",
    "new_dag",
    "run_dag",
    "run_trigger_for",
    "set_xcom",
]
