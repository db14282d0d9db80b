"""The Docify operators in real Airflow runs (``dag.test()``) against the emulator over 127.0.0.1.

Nothing of ours is mocked: tasks run through Airflow's task runner, deferred tasks through their
trigger, and the emulator counts the runs it started (= billed), so "bought once" is measured.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import (
    conn_json,
    console_text,
    needs_task_state_store,
    new_dag,
    run_dag,
)
from docify_provider.docify.files import safe_file_name
from docify_provider.operators.docify import (
    DocifyRunScenarioOperator,
    DocifyStreamScenarioOperator,
    DocifyUploadFileOperator,
)
from docify_provider.testing import INVOICE_KEY, SUMMARY_KEY, Fault, Scenario
from docify_provider.testing.samples import SAMPLE_PNG as PNG

pytestmark = pytest.mark.timeout(120)

SUMMARY_INPUTS = {"text": "Airflow runs Docify. Then more text follows.", "language": "en"}


def _png(folder: Path, name: str, salt: bytes = b"") -> Path:
    path = folder / name
    path.write_bytes(PNG + salt)
    return path


def _folder(base: Path, outcome: Any, task: str) -> Path:
    return base / safe_file_name(outcome.dag_id) / safe_file_name(outcome.run_id) / task


# -- validation before paying -----------------------------------------------------------------------


def test_invalid_inputs_fail_before_any_upload_or_run(docify_conns, tmp_path, capfd):
    emu = docify_conns
    image = _png(tmp_path, "invoice.png")
    with new_dag("invalid") as dag:
        # A file is given but also an unknown variable: nothing may be uploaded.
        DocifyRunScenarioOperator(task_id="unknown_var", inputs={"invoice_image": str(image), "totl": "1"})
        DocifyStreamScenarioOperator(
            task_id="bad_select",
            docify_conn_id="docify_summary",
            inputs={"text": "x" * 5001, "language": "de"},
            deferrable=True,
        )
        DocifyRunScenarioOperator(task_id="missing_file", inputs={"invoice_image": str(tmp_path / "nope.png")})
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.states() == {
        ("unknown_var", -1): "failed",
        ("bad_select", -1): "failed",
        ("missing_file", -1): "failed",
    }
    assert emu.uploads == []
    assert emu.runs_started() == 0
    assert not [r for r in emu.requests if r.endpoint in ("run", "stream", "upload")]
    assert "inputs['totl']" in logs
    assert "5001 characters, the maximum is 5000" in logs and "'de' is not one of" in logs
    assert "nope.png" in logs and "no such file" in logs


# -- files in -----------------------------------------------------------------------------------------


def test_file_path_and_storage_url_inputs_are_uploaded(docify_conns, tmp_path):
    emu = docify_conns
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    local = _png(tmp_path, "acme_corp.png")
    url = "file://" + str(_png(tmp_path, "globex-inc.png", b"other"))
    osp = ObjectStoragePath("file://" + str(_png(tmp_path, "umbrella.png", b"third")))
    with new_dag("file_inputs") as dag:
        DocifyRunScenarioOperator(task_id="local", inputs={"invoice_image": str(local)})
        DocifyStreamScenarioOperator(task_id="url", inputs={"invoice_image": url}, deferrable=True)
        DocifyRunScenarioOperator(task_id="osp", inputs={"invoice_image": osp})
    out = run_dag(dag)

    assert out.dag_state == "success"
    assert out.xcom("local")["json_result"]["vendor"] == "Acme Corp"
    assert out.xcom("local")["json_result"]["source_file"] == "acme_corp.png"
    assert out.xcom("url")["json_result"]["vendor"] == "Globex Inc"
    assert out.xcom("osp")["json_result"]["vendor"] == "Umbrella"
    assert sorted(u.file_name for u in emu.uploads) == ["acme_corp.png", "globex-inc.png", "umbrella.png"]
    assert {u.file_type for u in emu.uploads} == {"IMAGE"}
    assert {u.user for u in emu.uploads} == {f"airflow:{out.dag_id}.{t}" for t in ("local", "url", "osp")}
    assert emu.runs_started(INVOICE_KEY) == 3


@pytest.mark.airflow_line("XCom from one task to the next under the line's Execution API")
def test_upload_operator_xcom_feeds_a_run(docify_conns, tmp_path):
    emu = docify_conns
    image = _png(tmp_path, "initech.png")
    with new_dag("upload_then_run") as dag:
        # --8<-- [start:upload-then-run]
        upload = DocifyUploadFileOperator(task_id="upload", source=str(image), user="etl-bot")
        DocifyRunScenarioOperator(task_id="run", inputs={"invoice_image": upload.output})
        # --8<-- [end:upload-then-run]
    out = run_dag(dag)

    assert out.dag_state == "success"
    uploaded = out.xcom("upload")
    assert uploaded["file_name"] == "initech.png"
    assert uploaded["file_size"] == image.stat().st_size
    assert uploaded["file_type"] == "IMAGE"
    assert uploaded["upload_file_oid"] == emu.uploads[0].upload_file_oid
    assert len(emu.uploads) == 1 and emu.uploads[0].user == "etl-bot"
    assert out.xcom("run")["json_result"]["source_file"] == "initech.png"


# -- files out ----------------------------------------------------------------------------------------


@pytest.mark.airflow_line("ObjectStoragePath: universal-pathlib 0.2 paths on 3.0/3.1")
def test_attachments_to_remote_object_storage_land_there(docify_conns, tmp_path, monkeypatch, memory_object_storage):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    monkeypatch.chdir(tmp_path)
    image = _png(tmp_path, "acme_corp.png")
    with new_dag("attachments_remote") as dag:
        DocifyRunScenarioOperator(
            task_id="ocr", inputs={"invoice_image": str(image)}, attachments_to="memory://docify-ops-bucket/docify/"
        )
    out = run_dag(dag)
    assert out.dag_state == "success"
    (file,) = out.xcom("ocr")["files"]
    # universal-pathlib 0.2 (Airflow 3.0) writes memory:///bucket, 0.3 memory://bucket
    assert file["path"].startswith("memory://") and "docify-ops-bucket/docify/" in file["path"], file["path"]
    assert ObjectStoragePath(file["path"]).read_bytes().startswith(b"field,value\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme_corp.png"], "nothing written under ./memory:/"


@pytest.mark.airflow_line("asset events through the line's outlet_events")
def test_attachments_stored_per_task_with_asset_events(docify_conns, tmp_path):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    image = _png(tmp_path, "acme_corp.png")
    store = tmp_path / "attachments"
    with new_dag("attachments") as dag:
        DocifyRunScenarioOperator(
            task_id="ocr", inputs={"invoice_image": str(image)}, attachments_to=str(store), emit_asset_events=True
        )
        DocifyStreamScenarioOperator(
            task_id="ocr_stream", inputs={"invoice_image": str(image)}, attachments_to="file://" + str(store)
        )
        DocifyRunScenarioOperator(
            task_id="ocr_osp",
            inputs={"invoice_image": str(image)},
            attachments_to=ObjectStoragePath("file://" + str(store)),
            emit_asset_events=True,
            asset_alias="invoices_csv",
        )
    out = run_dag(dag)
    assert out.dag_state == "success"

    for task in ("ocr", "ocr_stream", "ocr_osp"):
        (file,) = out.xcom(task)["files"]
        expected = _folder(store, out, task) / "acme_corp_extracted.csv"
        assert file["file_name"] == "acme_corp_extracted.csv"
        assert file["path"] == ("file://" if task == "ocr_osp" else "") + str(expected)
        assert expected.stat().st_size == file["file_size"] > 0
        rows = dict(csv.reader(io.StringIO(expected.read_text())))
        assert rows["vendor"] == "Acme Corp"
        assert not [p for p in expected.parent.iterdir() if p.name.endswith(".part")]

    events = sorted(out.asset_events())
    expected_events = []
    for task in ("ocr", "ocr_osp"):
        run = out.xcom(task)
        expected_events.append(
            (
                (_folder(store, out, task) / "acme_corp_extracted.csv").as_uri(),
                {"run_id": run["run_id"], "cost_points": 10.5, "scenario_id": "1001"},
            )
        )
    assert events == sorted(expected_events)


def test_same_named_and_hostile_attachment_names_stay_distinct_and_inside(docify_conns, tmp_path, monkeypatch):
    emu = docify_conns
    emu.add_scenario(
        Scenario(
            scenario_id="9001",
            code="TWIN_FILES",
            name="Twin files",
            description="Two attachments with one name",
            parameters=[],
            produce=lambda inputs, files: ("ok", {"n": 2}, [("report.csv", b"a,1\n"), ("report.csv", b"b,22\n")]),
        )
    )
    emu.add_key("twin-key", "TWIN_FILES")
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_TWIN", conn_json(emu.base_url, "twin-key"))
    emu.inject(Fault("run", "attachment_name", name="../../etc/passwd", key=INVOICE_KEY))
    image = _png(tmp_path, "x.png")
    store = tmp_path / "out"
    with new_dag("names") as dag:
        DocifyRunScenarioOperator(task_id="twins", docify_conn_id="docify_twin", attachments_to=str(store))
        DocifyRunScenarioOperator(task_id="hostile", inputs={"invoice_image": str(image)}, attachments_to=str(store))
    out = run_dag(dag)
    assert out.dag_state == "success"

    twins = out.xcom("twins")["files"]
    folder = _folder(store, out, "twins")
    assert [f["path"] for f in twins] == [str(folder / "report.csv"), str(folder / "report-2.csv")]
    assert [Path(f["path"]).read_bytes() for f in twins] == [b"a,1\n", b"b,22\n"]
    (hostile,) = out.xcom("hostile")["files"]
    assert hostile["file_name"] == "../../etc/passwd"
    assert hostile["path"] == str(_folder(store, out, "hostile") / "passwd")


@pytest.mark.airflow_line("mapped tasks: map_index in the ledger's key and the per-task folders")
def test_mapped_runs_over_three_documents(docify_conns, tmp_path):
    from airflow.sdk import task

    emu = docify_conns
    names = ["alpha_co.png", "beta_co.png", "gamma_co.png"]
    images = [_png(tmp_path, n, n.encode()) for n in names]
    store = tmp_path / "mapped"
    with new_dag("mapped") as dag:
        ocr = DocifyRunScenarioOperator.partial(task_id="ocr", attachments_to=str(store)).expand(
            inputs=[{"invoice_image": str(p)} for p in images]
        )

        @task
        def vendors(json_results: Any) -> list[str]:
            return sorted(r["vendor"] for r in json_results)

        vendors(ocr.output.map(lambda r: r["json_result"]))
    out = run_dag(dag)

    assert out.dag_state == "success"
    assert out.xcom("vendors") == ["Alpha Co", "Beta Co", "Gamma Co"]
    results = [out.xcom("ocr", map_index=i) for i in range(3)]
    paths = [Path(r["files"][0]["path"]) for r in results]
    assert [p.parent for p in paths] == [_folder(store, out, f"ocr-{i}") for i in range(3)]
    assert len({p.parent for p in paths}) == 3
    assert all(p.stat().st_size == r["files"][0]["file_size"] for p, r in zip(paths, results, strict=True))
    assert emu.runs_started(INVOICE_KEY) == 3


# -- bought once ----------------------------------------------------------------------------------------


#: (try_number, call, key) of every ``task_state_store`` call, recorded by ``_count_state_calls``.
STATE_CALLS: list[tuple[int, str, str]] = []


class _CountingStore:
    def __init__(self, store: Any, try_number: int) -> None:
        self.store, self.try_number = store, try_number

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        STATE_CALLS.append((self.try_number, "get", key))
        return self.store.get(key, *args, **kwargs)

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        STATE_CALLS.append((self.try_number, "set", key))
        self.store.set(key, value, **kwargs)

    def delete(self, key: str) -> None:
        STATE_CALLS.append((self.try_number, "delete", key))
        self.store.delete(key)


def _count_state_calls(context: Any) -> None:
    context["task_state_store"] = _CountingStore(context["task_state_store"], context["ti"].try_number)


@needs_task_state_store
def test_a_run_costs_two_state_writes_and_a_retry_one_read(docify_conns, tmp_path):
    emu = docify_conns
    STATE_CALLS.clear()
    image = _png(tmp_path, "acme_corp.png")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("try 1 wants a folder here")
    with new_dag("state_calls") as dag:
        DocifyRunScenarioOperator(
            task_id="ocr",
            inputs={"invoice_image": str(image)},
            attachments_to=f"{{{{ '{blocker / 'sub'}' if ti.try_number == 1 else '{tmp_path / 'good'}' }}}}",
            retries=1,
            pre_execute=_count_state_calls,
        )
    out = run_dag(dag)

    assert out.state("ocr") == "success" and out.try_number("ocr") == 2
    assert emu.runs_started(INVOICE_KEY) == 1
    # Try 1 reads nothing (it cannot find anything) and writes the pending marker, then the result
    # over it; try 2 reads the result once and writes nothing.
    assert STATE_CALLS == [(1, "set", "docify_state"), (1, "set", "docify_state"), (2, "get", "docify_state")]


def test_lying_file_size_fails_every_try_but_buys_once(docify_conns, tmp_path, capfd):
    emu = docify_conns
    emu.inject(Fault("run", "lying_file_size", delta=7))
    image = _png(tmp_path, "acme_corp.png")
    with new_dag("lying_size") as dag:
        DocifyRunScenarioOperator(
            task_id="ocr", inputs={"invoice_image": str(image)}, attachments_to=str(tmp_path / "o"), retries=1
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("ocr") == "failed"
    assert out.try_number("ocr") == 2
    assert emu.runs_started(INVOICE_KEY) == 1
    assert "DocifyUnsafeDownloadError" in logs
    assert "no new run was bought" in logs
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]


@pytest.mark.airflow_line("force_rerun over the line's store")
def test_force_rerun_buys_again(docify_conns, tmp_path):
    emu = docify_conns
    image = _png(tmp_path, "acme_corp.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    attachments_to = f"{{{{ '{blocker / 'sub'}' if ti.try_number == 1 else '{tmp_path / 'good'}' }}}}"
    with new_dag("force_rerun") as dag:
        DocifyRunScenarioOperator(
            task_id="ocr",
            inputs={"invoice_image": str(image)},
            attachments_to=attachments_to,
            force_rerun=True,
            retries=1,
        )
    out = run_dag(dag)
    assert out.state("ocr") == "success"
    assert emu.runs_started(INVOICE_KEY) == 2


# -- outcome unknown: never pay twice silently ---------------------------------------------------------


@pytest.mark.airflow_line("the pending record in the line's store (a Variable before 3.3)")
@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        ("blocking", Fault("run", "drop_before_response", run_started=True)),
        ("stream", Fault("stream", "drop_mid_stream", after_events=2)),
        ("deferred", Fault("stream", "end_without_complete", after_events=3)),
    ],
)
def test_outcome_unknown_is_not_resent_by_a_retry(docify_conns, capfd, mode, fault):
    emu = docify_conns
    emu.inject(fault)
    kwargs: dict[str, Any] = {
        "task_id": "run",
        "docify_conn_id": "docify_summary",
        "inputs": SUMMARY_INPUTS,
        "retries": 1,
    }
    with new_dag(f"unknown_{mode}") as dag:
        if mode == "blocking":
            DocifyRunScenarioOperator(**kwargs)
        else:
            DocifyStreamScenarioOperator(deferrable=mode == "deferred", **kwargs)
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "failed"
    assert out.try_number("run") == 1, "failed at once: the retry would have refused to pay again"
    assert emu.runs_started(SUMMARY_KEY) == 1
    flat = "".join(logs.split())  # Airflow 3.0 prints the message wrapped inside a rich traceback
    assert "wouldriskpayingtwice" in flat and "allow_resubmit=True" in flat
    assert "clearthetaskstate:" in flat and "key'docify_state'" in flat, "where the pending record is"


@pytest.mark.airflow_line("the pending record in the line's store (a Variable before 3.3)")
def test_allow_resubmit_and_failed_runs_do_send_again(docify_conns):
    emu = docify_conns
    emu.inject(Fault("run", "drop_before_response", run_started=True))
    emu.inject(Fault("stream", "failed_run"))
    with new_dag("resubmit") as dag:
        unknown = DocifyRunScenarioOperator(
            task_id="unknown",
            docify_conn_id="docify_summary",
            inputs=SUMMARY_INPUTS,
            allow_resubmit=True,
            retries=1,
        )
        failed = DocifyStreamScenarioOperator(
            task_id="failed", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS, retries=1
        )
        unknown >> failed
    out = run_dag(dag)

    assert out.state("unknown") == "success" and out.try_number("unknown") == 2
    # A run that failed on Docify is a known outcome: the retry is a deliberate new run.
    assert out.state("failed") == "success" and out.try_number("failed") == 2
    assert emu.runs_started(SUMMARY_KEY) == 4


@pytest.mark.airflow_line("Airflow 3.0 hands a retry the trigger event of the try before")
def test_a_deferred_run_that_failed_on_docify_is_run_again_by_the_retry(docify_conns, capfd):
    # On Airflow 3.0 the retry is handed try 1's event; it must start over, as on 3.1+.
    emu = docify_conns
    emu.inject(Fault("stream", "failed_run", message="Bad scan"))
    with new_dag("failed_deferred") as dag:
        DocifyStreamScenarioOperator(
            task_id="failed", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS, deferrable=True, retries=1
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("failed") == "success" and out.try_number("failed") == 2
    assert emu.runs_started(SUMMARY_KEY) == 2, "a known failure is paid for again, once"
    assert logs.count("Deferring the Docify stream") == 2
    assert out.xcom("failed")["is_success"]


def _legacy_pending_then_fail(context: Any) -> None:
    """Try 1 as an earlier provider build left it: its ``docify_pending`` marker, then a crash."""
    if context["ti"].try_number == 1:
        context["task_state_store"].set("docify_pending", {"sent_at": "2026-01-01T00:00:00+00:00", "try_number": 1})
        raise RuntimeError("worker lost after sending the run")


@needs_task_state_store
def test_retry_honours_the_pending_marker_of_an_earlier_provider_build(docify_conns, capfd):
    emu = docify_conns
    with new_dag("legacy_pending") as dag:
        DocifyRunScenarioOperator(
            task_id="run",
            docify_conn_id="docify_summary",
            inputs=SUMMARY_INPUTS,
            retries=1,
            pre_execute=_legacy_pending_then_fail,
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "failed" and out.try_number("run") == 2
    assert emu.runs_started(SUMMARY_KEY) == 0
    assert "not re-sent" in logs and "task_state_store key 'docify_pending'" in logs
