"""The example pipelines users copy, run with ``dag.test()`` against the emulator."""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, conn_json, run_dag
from docify_provider.testing import INVOICE_KEY, SUMMARY_KEY
from docify_provider.testing.samples import make_sample_invoices

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


def load_dag(module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"docify_example_{module_name}", EXAMPLES / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _logged(caplog: Any) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("docify_example_"))


@pytest.mark.airflow_line(
    "the main example pipeline on the oldest line: mapped deferred streams, attachments, asset events; "
    "the five run under `airflow dags test` on 3.2 (scripts/test.sh)"
)
def test_invoice_pipeline_fills_the_table_and_stores_attachments(docify_conns, tmp_path, monkeypatch, caplog) -> None:
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "results.db"
    documents = make_sample_invoices(inbox, 3)
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_INVOICES", conn_json(docify_conns.base_url, INVOICE_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_RESULTS_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    caplog.set_level(logging.INFO)

    outcome = run_dag(load_dag("example_docify_invoices"), {"input_dir": str(inbox), "output_dir": str(out)})

    assert outcome.dag_state == "success", outcome.states()
    # The UI names each mapped ``extract`` after its document (map_index_template), not 0..2.
    names = sorted(p.name for p in documents)
    assert [outcome.ti("extract", i).rendered_map_index for i in range(3)] == names
    # The summaries are logged (the task's main log), not printed (its "Post Execute" group).
    logged = _logged(caplog)
    assert f"3 document(s) to extract from {inbox}" in logged
    assert "Stored 3 row(s) in table docify_invoices" in logged
    assert "Docify invoice batch: {'documents': 3, 'rows_stored': 3" in logged
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT source_file, invoice_number, amount, attachment FROM docify_invoices").fetchall()
    assert sorted(r[0] for r in rows) == sorted(p.name for p in documents)
    assert all(r[1].startswith("INV-") and r[2] > 0 for r in rows)
    attachments = [Path(r[3]) for r in rows]
    assert all(p.is_file() and p.is_relative_to(out / "attachments") for p in attachments)
    assert len({p.parent for p in attachments}) == 3
    summary = outcome.xcom("summarize")
    assert summary == {
        "documents": 3,
        "rows_stored": 3,
        "cost_points": 31.5,
        "elapsed_ms": summary["elapsed_ms"],
        "attachments": 3,
    }
    assert docify_conns.runs_started(INVOICE_KEY) == 3


def test_summary_example_feeds_json_result_to_a_taskflow_task(docify_conns, caplog) -> None:
    caplog.set_level(logging.INFO)
    outcome = run_dag(load_dag("example_docify_summary"), {"text": "Airflow runs Docify. It works.", "language": "fr"})

    assert outcome.dag_state == "success", outcome.states()
    assert outcome.xcom("publish") == "[fr] Airflow runs Docify. (5 words)"
    assert docify_conns.runs_started(SUMMARY_KEY) == 1
    assert "[fr] Airflow runs Docify. (5 words)" in _logged(caplog)


def test_examples_log_instead_of_printing() -> None:
    """print() output lands in the task log's collapsed "Post Execute" group; log lines do not."""
    for path in sorted(EXAMPLES.glob("*.py")):
        calls = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        ]
        assert not calls, f"{path.name} prints on line(s) {calls}; use its logger"


def test_dify_document_pipeline_fills_the_table_and_stores_output_files(
    dify_conns, tmp_path, monkeypatch, caplog
) -> None:
    from docify_provider.testing.dify import DOCUMENT_APP_KEY

    inbox, out, db = tmp_path / "inbox", tmp_path / "out", tmp_path / "results.db"
    inbox.mkdir()
    names = ["contract_a.txt", "memo_b.txt", "report_café.txt"]
    for i, name in enumerate(names):
        (inbox / name).write_text(f"Document {i}: quarterly figures, café supplies, {i * 7} pages.\n" * 20)
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_DOCUMENTS", conn_json(dify_conns.base_url, DOCUMENT_APP_KEY, "dify"))
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_RESULTS_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    caplog.set_level(logging.INFO)

    outcome = run_dag(load_dag("example_dify_documents"), {"input_dir": str(inbox), "output_dir": str(out)})

    assert outcome.dag_state == "success", outcome.states()
    assert [outcome.ti("summarize_document", i).rendered_map_index for i in range(3)] == sorted(names)
    logged = _logged(caplog)
    assert "Stored 3 row(s) in table dify_documents" in logged
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT workflow_run_id, status, summary, total_tokens, attachment FROM dify_documents"
        ).fetchall()
    assert len({r[0] for r in rows}) == 3 and all(r[1] == "succeeded" and r[2] and r[3] > 0 for r in rows)
    files = [Path(r[4]) for r in rows]
    assert all(p.is_file() and p.stat().st_size > 0 and p.is_relative_to(out / "attachments") for p in files)
    assert len({p.parent for p in files}) == 3
    assert outcome.xcom("report")["documents"] == 3
    # The price the emulator reports per node reaches the table and the report (the example once read
    # a key the XCom does not have and stored NULL).
    with sqlite3.connect(db) as conn:
        prices = conn.execute("SELECT total_price, currency FROM dify_documents").fetchall()
    assert all(price and price > 0 and currency == "USD" for price, currency in prices), prices
    assert outcome.xcom("report")["total_price"] > 0
    assert dify_conns.runs_started(key=DOCUMENT_APP_KEY) == 3


def test_dify_text_example_feeds_outputs_to_a_taskflow_task(dify_conns, monkeypatch, caplog) -> None:
    from docify_provider.testing.dify import TEXT_APP_KEY

    monkeypatch.setenv("AIRFLOW_CONN_DIFY_TEXT", conn_json(dify_conns.base_url, TEXT_APP_KEY, "dify"))
    caplog.set_level(logging.INFO)
    outcome = run_dag(load_dag("example_dify_text"), {"topic": "café logistics", "tone": "formal"})

    assert outcome.dag_state == "success", outcome.states()
    text = outcome.xcom("publish")
    assert isinstance(text, str) and text
    published = [line for line in _logged(caplog).splitlines() if "Published draft" in line]
    # A blocking run's answer carries no price (Dify reports it per node, on streams): the line leaves the
    # price out rather than printing "None None".
    assert published and "tokens" in published[0] and "None" not in published[0], published
    assert dify_conns.runs_started(key=TEXT_APP_KEY) == 1


# -- the Dify account API (user-scoped OpenAPI) and human review ----------------------------------


def test_nightly_example_runs_the_named_apps_and_skips_the_unfillable_one(airflow_env, monkeypatch, caplog) -> None:
    """On a current server (no tags): the apps named in ``params.apps`` run, nothing else in the workspace."""
    from docify_provider.testing.dify_openapi import (
        ACCOUNT_TOKEN,
        CHAT_APP_ID,
        COMPLETION_APP_ID,
        LONG_APP_ID,
        TEXT_APP_ID,
        DifyOpenAPIEmulator,
    )

    with DifyOpenAPIEmulator(ping_interval=0.1, event_interval=0.002) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_DIFY_ACCOUNT", conn_json(emu.base_url, ACCOUNT_TOKEN, "dify_openapi"))
        caplog.set_level(logging.INFO)
        conf = {
            "app_inputs": {
                "Text Writer": {"topic": "the night shift", "tone": "casual"},
                "Completion Writer": {"topic": "tomorrow"},
                "Chat Assistant": {"query": "What is open?"},
                "Long Job": {"seconds": 0.2},
            }
        }
        outcome = run_dag(load_dag("example_dify_nightly"), conf)
        runs = {app: emu.runs_started(ACCOUNT_TOKEN, app=app) for app in (TEXT_APP_ID, LONG_APP_ID, CHAT_APP_ID)}
        runs[COMPLETION_APP_ID] = emu.runs_started(ACCOUNT_TOKEN, app=COMPLETION_APP_ID)
        total = emu.runs_started(ACCOUNT_TOKEN)

    assert outcome.dag_state == "success", outcome.states()
    # One mapped task per runnable nightly app (Document Summary has a required file input: skipped).
    mapped = sorted(i for (task, i) in outcome.states() if task == "run_app")
    assert mapped == [0, 1, 2, 3]
    names = sorted(outcome.ti("run_app", i).rendered_map_index for i in mapped)
    assert names == ["Chat Assistant", "Completion Writer", "Long Job", "Text Writer"]
    assert all(outcome.state("run_app", i) == "success" for i in mapped)
    assert runs == dict.fromkeys(runs, 1) and total == 4, "one run per app, none for the skipped one"
    report = outcome.xcom("summary")
    assert report["skipped"] == ["Document Summary"]
    modes = sorted(r["mode"] for r in report["ran"])
    assert modes == ["chat", "completion", "workflow", "workflow"]
    assert all(r["status"] == "succeeded" and r["output"] for r in report["ran"])
    logged = _logged(caplog)
    assert "Skipping app 'Document Summary' (workflow, " in logged
    assert "required input(s) document have no default and no value in params.app_inputs" in logged
    assert "Nightly Dify batch: 4 app(s) ran, 1 skipped" in logged
    text = next(r for r in report["ran"] if r["app_id"] == TEXT_APP_ID)["output"]
    assert "the night shift" in text


def test_nightly_example_by_name_pattern_and_an_unknown_name_runs_nothing(
    airflow_env, monkeypatch, caplog, capsys
) -> None:
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, COMPLETION_APP_ID, TEXT_APP_ID, DifyOpenAPIEmulator

    with DifyOpenAPIEmulator(ping_interval=0.1, event_interval=0.002) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_DIFY_ACCOUNT", conn_json(emu.base_url, ACCOUNT_TOKEN, "dify_openapi"))
        caplog.set_level(logging.INFO)
        inputs = {"Text Writer": {"topic": "tea"}, "Completion Writer": {"topic": "tea"}}
        # "Disabled Writer" matches too; it has a required topic nobody gave: skipped, not run
        by_pattern = run_dag(
            load_dag("example_dify_nightly"), {"apps": [], "name_pattern": "* Writer", "app_inputs": inputs}
        )
        ran = {emu.runs_started(ACCOUNT_TOKEN, app=a) for a in (TEXT_APP_ID, COMPLETION_APP_ID)}
        after_pattern = emu.runs_started(ACCOUNT_TOKEN)
        typo = run_dag(load_dag("example_dify_nightly"), {"apps": ["Text Writer", "Long job"], "app_inputs": inputs})
        total = emu.runs_started(ACCOUNT_TOKEN)

    assert by_pattern.dag_state == "success", by_pattern.states()
    assert ran == {1} and after_pattern == 2, "the two writers whose inputs were given, nothing else"
    assert by_pattern.xcom("summary")["skipped"] == ["Disabled Writer"]
    assert typo.dag_state == "failed" and typo.state("plan_runs") == "failed"
    assert total == after_pattern, "an unknown app name fails the plan before anything runs"
    told = _logged(caplog) + capsys.readouterr().out
    assert "no app named 'Long job'" in told and "did you mean 'Long Job'?" in told, "names the typo and the candidate"


def _review_conn(monkeypatch: Any, dify_conns: Any) -> None:
    from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY

    monkeypatch.setenv("AIRFLOW_CONN_DIFY_REVIEW", conn_json(dify_conns.base_url, HUMAN_INPUT_APP_KEY, "dify"))
    monkeypatch.setenv("DIFY_REVIEW_POLL_SECONDS", "0.2")


@pytest.mark.timeout(120)
@pytest.mark.skipif(AIRFLOW_LINE < (3, 1), reason="Airflow human-in-the-loop requests are 3.1+")
def test_human_review_example_asks_airflow_and_publishes_what_the_reviewer_approved(
    dify_conns, monkeypatch, caplog
) -> None:
    from test_dify_hitl import _Person

    _review_conn(monkeypatch, dify_conns)
    caplog.set_level(logging.INFO)
    dag = load_dag("example_dify_human_review")
    person = _Person(dag.dag_id, [("Approve", {"comment": "good to go"})])
    person.start()
    outcome = run_dag(dag, {"topic": "the spring catalogue"})
    person.join(timeout=5)

    assert person.error is None
    assert outcome.dag_state == "success", outcome.states()
    (asked,) = person.seen
    assert asked["subject"].startswith("Review — ") and asked["options"] == ["Approve", "Reject"]
    assert "Please review the draft about the spring catalogue" in asked["body"]
    assert (outcome.state("publish"), outcome.state("send_back")) == ("success", "skipped")
    assert "Approved: the spring catalogue" in outcome.xcom("publish")
    assert "Comment: good to go" in outcome.xcom("publish")
    assert "Reviewer chose 'approve'" in _logged(caplog)
    assert dify_conns.runs_started() == 1


@pytest.mark.timeout(120)
def test_human_review_example_sends_back_what_the_reviewer_rejected_in_dify(dify_conns, monkeypatch, caplog) -> None:
    _review_conn(monkeypatch, dify_conns)
    caplog.set_level(logging.INFO)
    answering = dify_conns.answer_when_paused("reject", {"comment": "needs sources"})
    outcome = run_dag(load_dag("example_dify_human_review"), {"topic": "the spring catalogue"})
    answering.join(timeout=5)

    assert answering.error is None and answering.answered is not None
    assert outcome.dag_state == "success", outcome.states()
    assert (outcome.state("publish"), outcome.state("send_back")) == ("skipped", "success")
    assert outcome.xcom("send_back") == "needs sources"
    assert outcome.xcom("review")["outputs"]["decision"] == "reject"
    assert "Sent the draft back to its author with the reviewer's comment: needs sources" in _logged(caplog)
    assert dify_conns.runs_started() == 1
