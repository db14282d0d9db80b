"""The credential never leaves the connection, on every backend: real DAG runs, then a search of
everything they wrote.

Each test credential is distinctive (``<prefix>-SECRET-<purpose>-<uuid>``: a Docify key, a Dify app
key, a Dify account token) so a leak cannot hide behind a common string. One ``dag.test()`` run
per backend exercises its operators (and Docify's sensor) and triggers, in successful and failing
runs (failed runs, 401 from a wrong credential, a 401 / 400 whose body echoes the credential back,
Docify's outcome unknown with a retry), and then the test searches:

* the log output the run produced (stdout/stderr and pytest's log capture) and every file under
  ``AIRFLOW_HOME`` (task and trigger log files, the SQLite metadata DB's raw bytes);
* every row of every table of the metadata DB, with compressed columns (serialized DAG)
  decompressed and encrypted ones (trigger kwargs) decrypted; XComs, rendered template fields,
  trigger kwargs and the serialized DAG are also checked on their own with positive controls, so
  the search is known to look at real data;
* every exception the failing tasks raised (``str``, ``repr``, traceback with causes, attributes,
  and a pickle round trip: exceptions travel between processes);
* the stored attachments.

Where the ``Authorization`` header may go (plain http, attachments on another host, redirects) is
checked apart, in ``test_authorization_header.py``; the helpers both use are in
``tests/credential_scan.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, conn_json, new_dag, run_dag
from docify_provider.operators.docify import (
    DocifyRunScenarioOperator,
    DocifyStreamScenarioOperator,
    DocifyUploadFileOperator,
)
from docify_provider.sensors.docify import DocifyScenarioSensor
from docify_provider.testing import Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from tests.credential_scan import CAPTURED, capture_failure, exception_texts, new_secret

pytestmark = pytest.mark.timeout(180)


def _leaks(secrets: Iterable[str], where: str, text: str) -> list[str]:
    # Also the key's halves: a key cut by a line wrap or a truncated message is still a leak.
    found = []
    for secret in secrets:
        tail = secret.split("-SECRET-", 1)[1]
        if secret in text or tail in text:
            found.append(f"{secret[:30]}... in {where}")
    return found


def _render(value: Any) -> str:
    """A DB value as searchable text: bytes decompressed when they are zlib data (serialized DAGs)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        with contextlib.suppress(zlib.error):
            raw = zlib.decompress(raw)
        return raw.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _every_table() -> dict[str, str]:
    """Every row of every table of the metadata DB, as text per table."""
    from airflow import settings
    from sqlalchemy import MetaData, select

    metadata = MetaData()
    metadata.reflect(bind=settings.engine)
    dump: dict[str, str] = {}
    with settings.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            dump[table.name] = "\n".join(_render(v) for row in rows for v in row)
    return dump


def _trigger_kwargs() -> list[dict[str, Any]]:
    """Decrypted kwargs of every trigger row (stored Fernet-encrypted when a key is configured)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [dict(t.kwargs) for t in session.scalars(select(Trigger))]


def _run_rows(model: Any, dag_id: str) -> list[Any]:
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = list(session.scalars(select(model).where(model.dag_id == dag_id)))
        session.expunge_all()
    return rows


# -- one DAG run per backend with every operator, succeeding and failing ---------------------------


@dataclass
class Scenario:
    """One backend's DAG of succeeding and failing tasks, and the controls that show the scan saw real data."""

    dag: Any
    secrets: list[str]
    succeeded: set[str]
    #: Lines the run's log must have (it did what the scan assumes).
    needles: tuple[str, ...]
    #: Checks of the outcome beyond the task states (runs billed, tries).
    check: Any
    #: A value of a succeeded task's XCom the XCom scan must see, by task id and key.
    xcom_control: tuple[str, str]
    #: Connection ids the trigger rows and the serialized DAG must show.
    trigger_conns: tuple[str, ...]
    dag_conn: str


def _docify_scenario(emu: Any, monkeypatch: Any, tmp_path: Path) -> Scenario:
    keys = {
        "ok": new_secret("ok"),  # everything succeeds
        "err": new_secret("err"),  # ERROR event on streams, isSuccess false on blocking runs
        "unknown": new_secret("unknown"),  # the run starts, the answer never arrives
        "echo": new_secret("echo"),  # the server's error bodies repeat the key
        "wrong": new_secret("wrong"),  # not a Docify key at all: 401
    }
    for purpose in ("ok", "err", "unknown", "echo"):
        emu.add_key(keys[purpose], "OCR_INVOICE")
    for purpose, key in keys.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_DOCIFY_SECRET_{purpose.upper()}", conn_json(emu.base_url, key))
    emu.inject(Fault("stream", "error_event", key=keys["err"], times=None))
    emu.inject(Fault("run", "failed_run", key=keys["err"], times=None))
    emu.inject(Fault("run", "drop_before_response", run_started=True, key=keys["unknown"], times=None))
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, key=keys["unknown"], times=None))
    # A careless server that echoes the key it was given (some APIs do: "invalid key sk-...").
    emu.inject(Fault("stream", "status", status=401, message=f"Invalid API key {keys['echo']}", key=keys["echo"]))
    emu.inject(Fault("run", "status", status=400, message=f"Bad request for key={keys['echo']}", key=keys["echo"]))

    image = tmp_path / "inputs" / "acme_invoice.png"
    image.parent.mkdir()
    image.write_bytes(PNG)
    store = tmp_path / "attachments"
    common: dict[str, Any] = {"on_failure_callback": capture_failure}
    run_kwargs: dict[str, Any] = {**common, "inputs": {"invoice_image": str(image)}}
    sensor: dict[str, Any] = {**common, "expected_parameters": ["invoice_image"], "poke_interval": 0.2, "timeout": 20}

    with new_dag("secrets") as dag:
        upload = DocifyUploadFileOperator(task_id="upload", docify_conn_id="docify_secret_ok", source=str(image))
        blocking = DocifyRunScenarioOperator(
            task_id="blocking",
            docify_conn_id="docify_secret_ok",
            inputs={"invoice_image": upload.output},
            attachments_to=str(store),
            emit_asset_events=True,
            user="{{ dag.dag_id }}-user",
        )
        upload >> blocking
        DocifyStreamScenarioOperator(
            task_id="stream", docify_conn_id="docify_secret_ok", attachments_to=str(store), **run_kwargs
        )
        DocifyStreamScenarioOperator(
            task_id="deferred",
            docify_conn_id="docify_secret_ok",
            attachments_to=str(store),
            deferrable=True,
            **run_kwargs,
        )
        DocifyScenarioSensor(task_id="sensor_poke", docify_conn_id="docify_secret_ok", mode="poke", **sensor)
        DocifyScenarioSensor(task_id="sensor_deferred", docify_conn_id="docify_secret_ok", deferrable=True, **sensor)

        DocifyRunScenarioOperator(task_id="err_blocking", docify_conn_id="docify_secret_err", **run_kwargs)
        DocifyStreamScenarioOperator(task_id="err_stream", docify_conn_id="docify_secret_err", **run_kwargs)
        DocifyStreamScenarioOperator(
            task_id="err_deferred", docify_conn_id="docify_secret_err", deferrable=True, **run_kwargs
        )

        # retries=1, left unspent: an unknown outcome fails at once (a retry would refuse to pay again).
        retry_once: dict[str, Any] = {"retries": 1}
        DocifyRunScenarioOperator(
            task_id="unknown_blocking", docify_conn_id="docify_secret_unknown", **retry_once, **run_kwargs
        )
        DocifyStreamScenarioOperator(
            task_id="unknown_deferred",
            docify_conn_id="docify_secret_unknown",
            deferrable=True,
            **retry_once,
            **run_kwargs,
        )

        DocifyStreamScenarioOperator(
            task_id="echo_deferred", docify_conn_id="docify_secret_echo", deferrable=True, **run_kwargs
        )
        DocifyRunScenarioOperator(task_id="echo_blocking", docify_conn_id="docify_secret_echo", **run_kwargs)

        DocifyRunScenarioOperator(task_id="wrong_blocking", docify_conn_id="docify_secret_wrong", **run_kwargs)
        DocifyUploadFileOperator(
            task_id="wrong_upload", docify_conn_id="docify_secret_wrong", source=str(image), **common
        )
        DocifyScenarioSensor(
            task_id="wrong_sensor_deferred", docify_conn_id="docify_secret_wrong", deferrable=True, **sensor
        )
        DocifyScenarioSensor(task_id="wrong_sensor_poke", docify_conn_id="docify_secret_wrong", mode="poke", **sensor)

    def check(out: Any) -> None:
        assert out.try_number("unknown_deferred") == 1 and out.try_number("unknown_blocking") == 1
        assert emu.runs_started(keys["ok"]) == 3 and emu.runs_started(keys["unknown"]) == 2

    return Scenario(
        dag=dag,
        secrets=list(keys.values()),
        succeeded={"upload", "blocking", "stream", "deferred", "sensor_poke", "sensor_deferred"},
        needles=(
            "Docify stream START: session",
            "Docify reported an error during the run",
            "Docify refused the API key",
            "not re-sent",
            "Stored attachment",
        ),
        check=check,
        xcom_control=("deferred", "session_id"),
        trigger_conns=("docify_secret_ok", "docify_secret_wrong"),
        dag_conn="docify_secret_echo",
    )


def _dify_scenario(emu: Any, monkeypatch: Any, tmp_path: Path) -> Scenario:
    """The Service API: an app key per purpose, on the text app (and the document app for files)."""
    from docify_provider.operators.dify import DifyRunWorkflowOperator, DifyStreamWorkflowOperator

    keys = {p: new_secret(p, "app") for p in ("ok", "err", "echo", "wrong")}
    for purpose in ("ok", "err", "echo"):
        emu.add_key(keys[purpose], "text")
    for purpose, key in keys.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_DIFY_SECRET_{purpose.upper()}", conn_json(emu.base_url, key, "dify"))
    emu.inject(Fault("run", "failed_run", message="model exploded", key=keys["err"], times=None))
    emu.inject(Fault("stream", "failed_run", message="model exploded", key=keys["err"], times=None))
    emu.inject(Fault("run", "status", status=400, message=f"Bad request for key={keys['echo']}", key=keys["echo"]))
    emu.inject(Fault("stream", "status", status=401, message=f"Invalid key {keys['echo']}", key=keys["echo"]))
    inputs = {"topic": "secrets", "tone": "formal"}
    common: dict[str, Any] = {"on_failure_callback": capture_failure, "inputs": inputs}

    with new_dag("dify_secrets") as dag:
        DifyRunWorkflowOperator(
            task_id="blocking", dify_conn_id="dify_secret_ok", user="{{ dag.dag_id }}-user", **common
        )
        DifyStreamWorkflowOperator(task_id="stream", dify_conn_id="dify_secret_ok", **common)
        DifyStreamWorkflowOperator(task_id="deferred", dify_conn_id="dify_secret_ok", deferrable=True, **common)
        for purpose in ("err", "echo", "wrong"):
            conn = f"dify_secret_{purpose}"
            DifyRunWorkflowOperator(task_id=f"{purpose}_blocking", dify_conn_id=conn, **common)
            DifyStreamWorkflowOperator(task_id=f"{purpose}_deferred", dify_conn_id=conn, deferrable=True, **common)

    def check(out: Any) -> None:
        assert emu.runs_started(key=keys["ok"]) == 3 and emu.runs_started(key=keys["wrong"]) == 0

    return Scenario(
        dag=dag,
        secrets=list(keys.values()),
        succeeded={"blocking", "stream", "deferred"},
        needles=("Dify workflow started", "model exploded"),
        check=check,
        xcom_control=("deferred", "workflow_run_id"),
        trigger_conns=("dify_secret_ok", "dify_secret_echo"),
        dag_conn="dify_secret_echo",
    )


def _dify_openapi_scenario(emu: Any, monkeypatch: Any, tmp_path: Path) -> Scenario:
    """The account API: an account token per purpose (issued by the emulator's console)."""
    from docify_provider.operators.dify_openapi import DifyRunAppOperator
    from docify_provider.testing.dify_openapi import ACCOUNT_ID

    keys = {p: new_secret(p, "dfoa_account") for p in ("ok", "err", "echo", "wrong")}  # Dify checks the dfoa_ prefix
    for purpose in ("ok", "err", "echo"):
        emu.sessions.issue(ACCOUNT_ID, 3600.0, token=keys[purpose], device_label=f"secrets {purpose}")
    for purpose, key in keys.items():
        conn = conn_json(emu.base_url, key, "dify_openapi", poll_interval=0.05)
        monkeypatch.setenv(f"AIRFLOW_CONN_DIFY_OPENAPI_SECRET_{purpose.upper()}", conn)
    emu.inject(Fault("stream", "failed_run", message="model exploded", key=keys["err"], times=None))
    emu.inject(
        Fault("stream", "status", status=401, message=f"Invalid token {keys['echo']}", key=keys["echo"], times=None)
    )
    common: dict[str, Any] = {"on_failure_callback": capture_failure, "app": "Text Writer"}
    common["inputs"] = {"topic": "secrets", "tone": "formal"}

    with new_dag("dify_openapi_secrets") as dag:
        DifyRunAppOperator(
            task_id="stream", dify_openapi_conn_id="dify_openapi_secret_ok", user="{{ dag.dag_id }}-user", **common
        )
        DifyRunAppOperator(task_id="deferred", dify_openapi_conn_id="dify_openapi_secret_ok", deferrable=True, **common)
        for purpose in ("err", "echo", "wrong"):
            conn = f"dify_openapi_secret_{purpose}"
            DifyRunAppOperator(task_id=f"{purpose}_stream", dify_openapi_conn_id=conn, **common)
            DifyRunAppOperator(task_id=f"{purpose}_deferred", dify_openapi_conn_id=conn, deferrable=True, **common)

    def check(out: Any) -> None:
        assert emu.runs_started(keys["ok"]) == 2 and emu.runs_started(keys["wrong"]) == 0

    return Scenario(
        dag=dag,
        secrets=list(keys.values()),
        succeeded={"stream", "deferred"},
        needles=("Dify node", "model exploded"),
        check=check,
        xcom_control=("deferred", "workflow_run_id"),
        trigger_conns=("dify_openapi_secret_ok",),
        dag_conn="dify_openapi_secret_echo",
    )


SCENARIOS = {"docify": _docify_scenario, "dify": _dify_scenario, "dify_openapi": _dify_openapi_scenario}


# Eight to ten tasks under dag.test(): on Airflow 3.0 (about 3 s of CPU a task) with every core busy this
# has taken more than the default 300 s.
@pytest.mark.timeout(600)
@pytest.mark.airflow_line_for(
    "docify",
    reason="masking is compat.mask_secret_once's, one for every backend (3.0 masks inside the triggerer's loop "
    "locally): the Docify DAG, with a sensor, both triggers and every failure, checks it there",
)
def test_the_credential_is_nowhere_after_successful_and_failing_runs(
    contract, backend_emu, airflow_env, monkeypatch, tmp_path, capfd, caplog, capture_raised
):
    emu = backend_emu
    CAPTURED.clear()
    scenario = SCENARIOS[contract.name](emu, monkeypatch, tmp_path)
    dag = scenario.dag

    with caplog.at_level(logging.DEBUG):
        out = run_dag(dag)
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text

    # The run did what it should, so the search below looks at real successes and real failures.
    states = {task: out.state(task) for task in dag.task_ids}
    assert {t for t, s in states.items() if s == "success"} == scenario.succeeded, (str(states), logs[-3000:])
    failing = set(dag.task_ids) - scenario.succeeded
    assert all(states[t] == "failed" for t in failing), states
    assert {task for task, _ in CAPTURED} == failing, [(t, type(e).__name__) for t, e in CAPTURED]
    for needle in scenario.needles:
        assert needle in logs, needle
    scenario.check(out)

    secrets = scenario.secrets
    leaks: list[str] = []
    if AIRFLOW_LINE < (3, 1):
        # Airflow 3.0's task runner logs every MaskSecret request it sends its supervisor, value
        # included, at debug level (Airflow's own line, for the masking Airflow itself does on every
        # connection lookup); 3.1 stopped. The provider masks once per process. Everything else is
        # scanned as on every line.
        own = [line for line in logs.splitlines() if "msg=MaskSecret(value=" in line]
        assert all("[debug" in line for line in own), "Airflow 3.0 prints MaskSecret only at debug level"
        logs = "\n".join(line for line in logs.splitlines() if "msg=MaskSecret(value=" not in line)
    leaks += _leaks(secrets, "log output", logs)

    # Files: task and trigger logs, the SQLite DB's raw pages, the stored attachments.
    files = [p for base in (airflow_env, tmp_path) for p in base.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    for path in files:
        leaks += _leaks(secrets, str(path), path.read_bytes().decode("utf-8", errors="replace"))

    # Every table, and the places most likely to hold a copy, each with a positive control.
    for table, text in _every_table().items():
        leaks += _leaks(secrets, f"table {table}", text)

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.xcom import XComModel

    xcoms = _run_rows(XComModel, out.dag_id)
    values = [json.dumps(XComModel.deserialize_value(x), default=str) for x in xcoms]
    task, field = scenario.xcom_control
    assert any(out.xcom(task)[field] in v for v in values)
    assert any(x.key == contract.marker_key for x in xcoms)  # the stream's restart marker
    leaks += _leaks(secrets, "XCom values", "\n".join(values))

    rendered = [json.dumps(r.rendered_fields, default=str) for r in _run_rows(RenderedTaskInstanceFields, out.dag_id)]
    assert any(f"{out.dag_id}-user" in r for r in rendered), "rendered template fields were not stored"
    leaks += _leaks(secrets, "rendered template fields", "\n".join(rendered))

    triggers = json.dumps(_trigger_kwargs(), default=str)
    assert all(conn in triggers for conn in scenario.trigger_conns), "trigger rows not found"
    leaks += _leaks(secrets, "trigger kwargs", triggers)

    serialized = _run_rows(SerializedDagModel, out.dag_id)
    assert serialized
    dag_json = "\n".join(json.dumps(s.data, default=str) for s in serialized)
    assert scenario.dag_conn in dag_json
    leaks += _leaks(secrets, "serialized DAG", dag_json)

    for _, exc in CAPTURED:
        leaks += _leaks(secrets, f"{type(exc).__name__} raised by a task", exception_texts(exc))

    assert leaks == [], "\n".join(leaks)
