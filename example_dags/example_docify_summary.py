"""A text scenario whose structured result feeds a TaskFlow task.

``DocifyRunScenarioOperator`` makes one blocking run with plain-text inputs and returns one XCom
dict; the next task takes ``summarize.output`` and reads its ``json_result``. Connection
``docify_summary`` holds a key bound to a summary scenario with parameters ``text``, ``title`` and
``language``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.docify import DocifyRunScenarioOperator

# Logged lines land in the task's main log (print() output ends up in its "Post Execute" group).
log = logging.getLogger(__name__)

with DAG(
    dag_id="example_docify_summary",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["docify", "example"],
    params={
        "text": Param(
            "Airflow schedules the nightly batch. Docify reads every invoice and returns structured fields.",
            type="string",
        ),
        "language": Param("en", enum=["en", "ja", "fr"]),
    },
    doc_md=__doc__,
) as dag:
    summarize = DocifyRunScenarioOperator(
        task_id="summarize",
        docify_conn_id="docify_summary",
        inputs={"text": "{{ params.text }}", "title": "Nightly note", "language": "{{ params.language }}"},
    )

    @task
    def publish(run: dict[str, Any]) -> str:
        summary = run["json_result"]
        line = f"[{summary['language']}] {summary['summary']} ({summary['word_count']} words)"
        log.info("%s", line)
        return line

    publish(summarize.output)
