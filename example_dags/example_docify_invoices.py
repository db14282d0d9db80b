"""Invoices: every document in a folder through Docify's invoice scenario, into a SQL table.

What a user copies for a nightly batch:

* ``list_documents`` finds the files (any local folder, or an object-storage URL such as
  ``s3://bucket/inbox/`` through ``ObjectStoragePath``);
* ``extract`` maps ``DocifyStreamScenarioOperator`` over them. Each run is deferrable: the triggerer
  holds the event stream, so no worker slot waits on Docify, while the progress still reaches the
  task log. Attachments are streamed into ``output_dir`` under a folder per task instance;
* ``store_rows`` writes the parsed fields into a SQL table through Airflow's SQL hooks (SQLite by
  default: connection ``docify_results_db``; point it at Postgres, Snowflake, ... unchanged);
* ``summarize`` sums cost points and time.

Params: ``input_dir``, ``output_dir``; connection ``docify_invoices`` (a Docify key bound to an
invoice scenario whose file parameter is ``invoice_image``).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.docify import DocifyStreamScenarioOperator

DOCUMENT_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
TABLE = "docify_invoices"

# Logged lines land in the task's main log (print() output ends up in its "Post Execute" group).
log = logging.getLogger(__name__)

with DAG(
    dag_id="example_docify_invoices",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=32,
    tags=["docify", "example"],
    params={
        "input_dir": Param(os.environ.get("DOCIFY_INPUT_DIR", os.path.expanduser("~/docify/inbox")), type="string"),
        "output_dir": Param(os.environ.get("DOCIFY_OUTPUT_DIR", os.path.expanduser("~/docify/out")), type="string"),
        "file_parameter": Param("invoice_image", type="string"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def list_documents(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        assert params is not None
        folder = params["input_dir"]
        root = ObjectStoragePath(folder if "://" in folder else f"file://{os.path.abspath(folder)}")
        files = sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
        if not files:
            raise ValueError(f"input_dir {folder!r} holds no documents ({', '.join(sorted(DOCUMENT_SUFFIXES))})")
        log.info("%d document(s) to extract from %s", len(files), folder)
        return [{params["file_parameter"]: f} for f in files]

    # --8<-- [start:extract]
    extract = DocifyStreamScenarioOperator.partial(
        task_id="extract",
        docify_conn_id="docify_invoices",
        deferrable=True,
        attachments_to="{{ params.output_dir }}/attachments",
        retries=2,
        retry_delay=timedelta(seconds=5),
        max_active_tis_per_dag=16,
        # Name each mapped task instance in the UI after its document ("acme_corp.png", not "0").
        map_index_template="{{ task.inputs[params.file_parameter].rstrip('/').split('/')[-1] }}",
    ).expand(inputs=list_documents())
    # --8<-- [end:extract]

    @task
    def store_rows(results: list[dict[str, Any]]) -> int:
        from airflow.providers.common.compat.sdk import BaseHook

        hook = BaseHook.get_connection("docify_results_db").get_hook()
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " run_id TEXT PRIMARY KEY, invoice_number TEXT, amount REAL, currency TEXT, vendor TEXT,"
            " source_file TEXT, cost_points REAL, attachment TEXT, finished_at TEXT)"
        )
        rows = []
        for res in results:
            fields = res["json_result"] if isinstance(res["json_result"], dict) else {}
            attachment = next((f["path"] for f in res["files"] if f["path"]), None)
            rows.append(
                (
                    res["run_id"],
                    fields.get("invoice_number"),
                    fields.get("amount"),
                    fields.get("currency"),
                    fields.get("vendor"),
                    fields.get("source_file"),
                    res["cost_points"],
                    attachment,
                    res["finished_at"],
                )
            )
        hook.insert_rows(
            TABLE,
            rows,
            target_fields=[
                "run_id",
                "invoice_number",
                "amount",
                "currency",
                "vendor",
                "source_file",
                "cost_points",
                "attachment",
                "finished_at",
            ],
            replace=True,
            replace_index="run_id",
        )
        log.info("Stored %d row(s) in table %s", len(rows), TABLE)
        return len(rows)

    @task
    def summarize(results: list[dict[str, Any]], stored: int) -> dict[str, Any]:
        results = list(results)
        summary = {
            "documents": len(results),
            "rows_stored": stored,
            "cost_points": round(sum(r["cost_points"] or 0 for r in results), 3),
            "elapsed_ms": sum(r["elapsed_ms"] or 0 for r in results),
            "attachments": sum(1 for r in results for f in r["files"] if f["path"]),
        }
        log.info("Docify invoice batch: %s", summary)
        return summary

    results = extract.output
    summarize(results, store_rows(results))
