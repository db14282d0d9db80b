"""DAGs of ``bench_batch_throughput.py``: one document batch five ways, one DAG each.

The benchmark copies this file into a throw-away dags folder and sets, for every component:

* ``DOCIFY_BENCH_DOCS``: documents per DAG run (each ``{"seconds": S, "label": "<config>-<i>"}``, the
  emulator's Long Job app: a run of S seconds, named so that runs per document can be counted);
* ``DOCIFY_BENCH_SECONDS``: S, the service time of one run (default 5);
* ``DOCIFY_BENCH_MAX_CONCURRENCY``: the batch operator's ``max_concurrency`` (default 32: above the
  server's cap, so the admission limiter has to find it from 429s);
* ``DOCIFY_BENCH_POOL`` / ``DOCIFY_BENCH_POOL_SLOTS``: the pool of the mapped tasks (created by the
  benchmark with its deferred tasks counted) and the mapped DAGs' ``max_active_tasks``, both the
  server's cap (20), so that mapped tasks stay under it as the docs advise;
* ``DOCIFY_BENCH_RESULTS``: the folder of the batches' ``results_to`` files ("" keeps the results in
  Airflow Variables).

The connection ``dify_bench`` points at the emulator with the Long Job app's key (host = its base URL
with ``/v1``); the hand-written tasks read it too.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, BaseHook, task

from docify_provider.operators.dify import (
    DifyBatchWorkflowOperator,
    DifyRunWorkflowOperator,
    DifyStreamWorkflowOperator,
)

DOCS = int(os.environ.get("DOCIFY_BENCH_DOCS", "20"))
SECONDS = float(os.environ.get("DOCIFY_BENCH_SECONDS", "5"))
MAX_CONCURRENCY = int(os.environ.get("DOCIFY_BENCH_MAX_CONCURRENCY", "32"))
POOL = os.environ.get("DOCIFY_BENCH_POOL", "default_pool")
POOL_SLOTS = int(os.environ.get("DOCIFY_BENCH_POOL_SLOTS", "20"))
RESULTS = os.environ.get("DOCIFY_BENCH_RESULTS", "")
CONN_ID = "dify_bench"


def documents(config: str) -> list[dict[str, object]]:
    """The batch's inputs: ``DOCS`` runs of ``SECONDS`` seconds, each labelled ``<config>-<i>``."""
    return [{"seconds": SECONDS, "label": f"{config}-{i}"} for i in range(DOCS)]


def _dag(config: str, **kwargs: object) -> DAG:
    return DAG(
        dag_id="bench_" + config.replace("-", "_"),  # the benchmark's --configs name, as a DAG id
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["benchmark"],
        # A busy machine makes Airflow fail a resumed deferred task now and then ("finished with state
        # success, but the task instance's state attribute is queued", apache/airflow#67287); a retry
        # re-attaches to its run or reuses its result (the ledger): nothing is bought twice.
        default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
        **kwargs,  # type: ignore[arg-type]
    )


for _config, _deferrable in (("batch-deferrable", True), ("batch-worker", False)):
    with _dag(_config):
        DifyBatchWorkflowOperator(
            task_id="batch",
            dify_conn_id=CONN_ID,
            inputs=documents(_config),
            max_concurrency=MAX_CONCURRENCY,
            deferrable=_deferrable,
            results_to=f"{RESULTS}/{_config}/{{{{ run_id }}}}.jsonl" if RESULTS else None,
        )

with _dag("mapped-blocking", max_active_tasks=POOL_SLOTS):
    DifyRunWorkflowOperator.partial(task_id="run", dify_conn_id=CONN_ID, pool=POOL).expand(
        inputs=documents("mapped-blocking")
    )

with _dag("mapped-deferrable", max_active_tasks=POOL_SLOTS):
    DifyStreamWorkflowOperator.partial(task_id="run", dify_conn_id=CONN_ID, pool=POOL, deferrable=True).expand(
        inputs=documents("mapped-deferrable")
    )


def handwritten_run(inputs: dict[str, Any]) -> Any:
    """One blocking workflow run as a careful user writes it without the provider (issue 20 item 7's
    baseline): the key from the same Airflow connection, one ``requests.post``, raise on a non-2xx
    answer or a run that did not succeed, return the outputs. No retry, no ledger, no validation."""
    import requests

    conn = BaseHook.get_connection(CONN_ID)
    response = requests.post(
        f"{(conn.host or '').rstrip('/')}/workflows/run",
        headers={"Authorization": f"Bearer {conn.password}"},
        json={"inputs": inputs, "response_mode": "blocking", "user": "bench"},
        timeout=600,
    )
    response.raise_for_status()
    data = response.json()["data"]
    if data.get("status") != "succeeded":
        raise RuntimeError(f"Dify run {data.get('id')} ended {data.get('status')}: {data.get('error')}")
    return data.get("outputs")


with _dag("mapped-handwritten", max_active_tasks=POOL_SLOTS):
    # multiple_outputs=False: one XCom, as the operator pushes (a dict return type would infer one per key)
    task(task_id="run", pool=POOL, multiple_outputs=False)(handwritten_run).expand(
        inputs=documents("mapped-handwritten")
    )

# Warm-up (run once before anything is measured, unless --no-warm-up): a deployment that has run
# nothing yet pays one-off costs in its first tasks and triggers (the triggerer builds its in-process
# Execution API on the first Variable or XCom a trigger reads: seconds of CPU). A long-running
# deployment paid them long ago, so they belong to no configuration.
with _dag("warm-up"):
    _warm = [{"seconds": 0.5, "label": f"warm-up-{i}"} for i in range(2)]
    DifyBatchWorkflowOperator(task_id="batch", dify_conn_id=CONN_ID, inputs=_warm)
    DifyStreamWorkflowOperator.partial(task_id="run", dify_conn_id=CONN_ID, deferrable=True).expand(inputs=_warm)
