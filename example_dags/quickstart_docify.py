"""Quick start, Docify: read one invoice with an invoice scenario, then use what it found.

Two tasks, the chain every Docify DAG starts from:

* ``read_invoice`` (``DocifyRunScenarioOperator``) checks the inputs against the scenario, uploads
  the file named by the param ``invoice``, runs the scenario the connection's API key is bound to
  and waits for the answer. It stores the files the scenario produces under ``output_dir`` and
  returns one XCom dict: ``json_result`` (the structured answer), ``cost_points`` (what Docify
  billed), ``files`` (where each produced file was stored), ``run_id``, ...
* ``book_invoice`` (a TaskFlow task) receives that dict and uses it: here it logs the fields and
  what the run cost, and returns one row; in your DAG it would write the row to a table.

Connection ``docify_default`` (type ``docify``): host = the Docify base URL, which ends in
``/docify``; password = the API key of the scenario (one key per scenario). Set it as the
environment variable ``AIRFLOW_CONN_DOCIFY_DEFAULT`` or in the UI (Admin -> Connections).

Params: ``invoice`` (a PDF or image file; default ``$DOCIFY_INVOICE``, else
``~/docify/invoice.pdf``) and ``output_dir`` (default ``$DOCIFY_OUTPUT_DIR``, else ``~/docify/out``).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.docify import DocifyRunScenarioOperator

# A task's logger.info() lines land in its main log in the UI (print() output would land in the
# collapsed "Post Execute" group instead).
log = logging.getLogger(__name__)

with DAG(
    dag_id="quickstart_docify",
    schedule=None,  # run it by hand (or `airflow dags test`); give it a cron string to schedule it
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["docify", "quickstart"],
    # Params are the run's settings: the UI's trigger form shows them, `airflow dags test -c '{...}'`
    # overrides them. The defaults are read from the environment when the DAG file is parsed.
    params={
        "invoice": Param(
            os.environ.get("DOCIFY_INVOICE", os.path.expanduser("~/docify/invoice.pdf")),
            type="string",
            description="Path (or storage URL such as s3://...) of the invoice to read",
        ),
        "output_dir": Param(
            os.environ.get("DOCIFY_OUTPUT_DIR", os.path.expanduser("~/docify/out")),
            type="string",
            description="Folder for the files the scenario produces",
        ),
    },
    doc_md=__doc__,
) as dag:
    read_invoice = DocifyRunScenarioOperator(
        task_id="read_invoice",
        docify_conn_id="docify_default",
        # Scenario variable -> value. For a FILE variable give a path: it is uploaded for you, after
        # the inputs were checked against the scenario (a wrong name or a missing file fails here,
        # before anything is uploaded or billed). "{{ ... }}" is filled in when the task runs.
        inputs={"invoice_image": "{{ params.invoice }}"},
        # Produced files land in <output_dir>/<dag_id>/<run_id>/<task_id>/.
        attachments_to="{{ params.output_dir }}",
        # A retry never pays twice: it reuses the result an earlier try already bought, and it
        # refuses to send the run again when an earlier try's answer was lost.
        retries=2,
        retry_delay=timedelta(seconds=30),
    )

    @task
    def book_invoice(run: dict[str, Any]) -> dict[str, Any]:
        # json_result holds the scenario's own fields. These names are those of the bundled
        # emulator's invoice scenario; log run["json_result"] once to see your scenario's.
        fields = run["json_result"] if isinstance(run["json_result"], dict) else {}
        log.info("Docify run %s read: %s", run["run_id"], json.dumps(fields, ensure_ascii=False))
        cost = run["cost_points"]
        log.info("Billed: %s", f"{cost:g} cost points" if cost is not None else "Docify reported no cost")
        produced = [f["path"] for f in run["files"] if f["path"]]
        for path in produced:
            log.info("Produced file: %s", path)
        return {
            "invoice_number": fields.get("invoice_number"),
            "vendor": fields.get("vendor"),
            "amount": fields.get("amount"),
            "currency": fields.get("currency"),
            "docify_run_id": run["run_id"],
            "cost_points": cost,
            "files": produced,
        }

    # Passing read_invoice.output makes book_invoice run after read_invoice and receive its XCom.
    book_invoice(read_invoice.output)
