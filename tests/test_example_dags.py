"""The example pipelines users copy, run with ``dag.test()`` against the emulator."""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from airflow_helpers import conn_json, run_dag
from docify_provider.testing import INVOICE_KEY, SUMMARY_KEY
from docify_provider.testing.samples import make_sample_invoices

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"


def load_dag(module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"docify_example_{module_name}", EXAMPLES / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _logged(caplog: Any) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("docify_example_"))


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
    assert dify_conns.runs_started(key=DOCUMENT_APP_KEY) == 3


def test_dify_text_example_feeds_outputs_to_a_taskflow_task(dify_conns, monkeypatch, caplog) -> None:
    from docify_provider.testing.dify import TEXT_APP_KEY

    monkeypatch.setenv("AIRFLOW_CONN_DIFY_TEXT", conn_json(dify_conns.base_url, TEXT_APP_KEY, "dify"))
    caplog.set_level(logging.INFO)
    outcome = run_dag(load_dag("example_dify_text"), {"topic": "café logistics", "tone": "formal"})

    assert outcome.dag_state == "success", outcome.states()
    text = outcome.xcom("publish")
    assert isinstance(text, str) and text
    assert "Published draft" in _logged(caplog)
    assert dify_conns.runs_started(key=TEXT_APP_KEY) == 1
