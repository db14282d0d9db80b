"""Human review: a Dify workflow asks a reviewer, who answers in Airflow; then publish or send back.

For drafts that a person must approve before they go out:

* ``review`` runs the Dify workflow (``DifyRunWorkflowOperator``, Workflow Service API, connection
  ``dify_review``). When the workflow reaches its human-input node the run pauses; with
  ``on_pause="wait"`` the task asks Airflow for the answer (Airflow 3.1+: the form appears under
  **Required Actions** as "Review — <app name>, run <run id>", with the form's text, until when it
  can be answered, its actions as buttons and its ``comment`` as a multi-line field) and waits
  deferred: no worker slot is held while the reviewer thinks, and the log says every five
  minutes that it still waits. The answer is posted to Dify, the run resumes and the task
  re-attaches to it. A form answered in Dify's own UI works too (nothing is posted then). An
  expired form fails the task, saying when it expired; the Dify run stays paused, and a new DAG
  run starts over. ``retries=1`` covers an Airflow 3.3 race (see the comment on the operator); a
  retry re-attaches to the same Dify run and never buys a second one.
* ``decide`` branches on the action the reviewer chose (the workflow's ``decision`` output):
  ``publish`` for approve, ``send_back`` for anything else (the reviewer's comment goes with it).

Params: ``topic``; connection ``dify_review`` (the app key of a workflow with a text-input
``topic``, a human-input node with actions ``approve`` / ``reject`` and a ``comment`` field, and
outputs ``decision``, ``comment``, ``text``). ``DIFY_REVIEW_POLL_SECONDS`` (default 30) sets how
often the waiting trigger looks at the Airflow answer, the form and the run.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify import DifyRunWorkflowOperator

POLL_SECONDS = float(os.environ.get("DIFY_REVIEW_POLL_SECONDS", "30"))

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_dify_human_review",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dify", "example", "human-in-the-loop"],
    params={"topic": Param("the Q3 supplier newsletter", type="string")},
    doc_md=__doc__,
) as dag:
    review = DifyRunWorkflowOperator(
        task_id="review",
        dify_conn_id="dify_review",
        inputs={"topic": "{{ params.topic }}"},
        on_pause="wait",
        pause_poll_interval=POLL_SECONDS,
        # How long the reviewer may take, on top of the form's own expiry in Dify.
        execution_timeout=timedelta(days=2),
        # Airflow 3.3 can fail a task that resumes within one scheduler loop of its deferral as
        # "changed externally" (apache/airflow#67287): an answer given a moment after the request, or a
        # run that ends right after the answer. The retry re-attaches to the same Dify run (the task's
        # ledger holds its id) and waits on the same request: nothing is bought or asked twice.
        retries=1,
        retry_delay=timedelta(seconds=10),
    )

    @task.branch
    def decide(run: dict[str, Any]) -> str:
        decision = (run["outputs"] or {}).get("decision")
        log.info("Reviewer chose %r on Dify run %s", decision, run["workflow_run_id"])
        return "publish" if decision == "approve" else "send_back"

    @task
    def publish(run: dict[str, Any]) -> str:
        text = (run["outputs"] or {}).get("text") or ""
        log.info("Published the reviewed draft (%d characters): %s", len(text), text[:200])
        return text

    @task
    def send_back(run: dict[str, Any]) -> str:
        comment = (run["outputs"] or {}).get("comment") or ""
        log.info("Sent the draft back to its author with the reviewer's comment: %s", comment)
        return comment

    decide(review.output) >> [publish(review.output), send_back(review.output)]
