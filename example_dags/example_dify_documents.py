"""Documents: every file in a folder through a Dify document workflow, into a SQL table.

The Dify twin of ``example_docify_invoices``, for teams that run their document workflows on
Dify (Cloud or self-hosted):

* ``list_documents`` finds the files (a local folder, or an object-storage URL such as
  ``s3://bucket/inbox/`` through ``ObjectStoragePath``);
* ``summarize_document`` maps ``DifyStreamWorkflowOperator`` over them. Each file is checked
  against the app's ``/parameters`` (type, extension, size), uploaded with the run's ``user``
  and sent as a ``local_file`` input. Each run is deferrable: the triggerer holds the event
  stream, and if the stream is cut (Dify closes one that is silent for 300 s, proxies cut
  others) or the triggerer dies, the run is re-attached by its ``workflow_run_id``, never sent
  twice. Output files are streamed into ``output_dir`` under a folder per task instance;
* ``store_rows`` writes one row per document through Airflow's SQL hooks (SQLite by default:
  connection ``dify_results_db``);
* ``report`` sums tokens, price and time.

Params: ``input_dir``, ``output_dir``, ``file_variable``; connection ``dify_documents`` (the app key
of a workflow with a file input, default variable name ``document``).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify import DifyStreamWorkflowOperator

DOCUMENT_SUFFIXES = {".pdf", ".txt", ".docx", ".md"}
TABLE = "dify_documents"

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_dify_documents",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=32,
    tags=["dify", "example"],
    params={
        "input_dir": Param(os.environ.get("DIFY_INPUT_DIR", os.path.expanduser("~/dify/inbox")), type="string"),
        "output_dir": Param(os.environ.get("DIFY_OUTPUT_DIR", os.path.expanduser("~/dify/out")), type="string"),
        "file_variable": Param("document", type="string"),
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
        log.info("%d document(s) to summarize from %s", len(files), folder)
        return [{params["file_variable"]: f} for f in files]

    # --8<-- [start:summarize]
    summarize_document = DifyStreamWorkflowOperator.partial(
        task_id="summarize_document",
        dify_conn_id="dify_documents",
        deferrable=True,
        attachments_to="{{ params.output_dir }}/attachments",
        retries=2,
        retry_delay=timedelta(seconds=5),
        max_active_tis_per_dag=16,
        map_index_template="{{ task.inputs[params.file_variable].rstrip('/').split('/')[-1] }}",
    ).expand(inputs=list_documents())
    # --8<-- [end:summarize]

    @task
    def store_rows(results: list[dict[str, Any]], params: dict[str, Any] | None = None) -> int:
        from airflow.providers.common.compat.sdk import BaseHook

        hook = BaseHook.get_connection("dify_results_db").get_hook()
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " workflow_run_id TEXT PRIMARY KEY, status TEXT, summary TEXT, total_tokens INTEGER,"
            " total_price REAL, currency TEXT, attachment TEXT, finished_at TEXT)"
        )
        rows = []
        for res in results:
            usage = res.get("usage") or {}
            attachment = next((f["path"] for f in res["files"] if f["path"]), None)
            rows.append(
                (
                    res["workflow_run_id"],
                    res["status"],
                    (res["outputs"] or {}).get("summary"),
                    res["total_tokens"],
                    usage.get("price"),  # the XCom's usage: tokens, price, currency
                    usage.get("currency"),
                    attachment,
                    res["finished_at"],
                )
            )
        fields = ["workflow_run_id", "status", "summary", "total_tokens", "total_price", "currency", "attachment"]
        hook.insert_rows(
            TABLE, rows, target_fields=[*fields, "finished_at"], replace=True, replace_index="workflow_run_id"
        )
        log.info("Stored %d row(s) in table %s", len(rows), TABLE)
        return len(rows)

    @task
    def report(results: list[dict[str, Any]], stored: int) -> dict[str, Any]:
        results = list(results)
        summary = {
            "documents": len(results),
            "rows_stored": stored,
            "total_tokens": sum(r["total_tokens"] or 0 for r in results),
            "total_price": round(sum(float((r.get("usage") or {}).get("price") or 0) for r in results), 6),
            "elapsed_time": round(sum(r["elapsed_time"] or 0 for r in results), 3),
            "files": sum(1 for r in results for f in r["files"] if f["path"]),
        }
        log.info("Dify document batch: %s", summary)
        return summary

    results = summarize_document.output
    report(results, store_rows(results))
