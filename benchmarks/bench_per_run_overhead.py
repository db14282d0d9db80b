"""What the provider's operator costs per run, against hand-written ``requests`` code, under ``dag.test()``.

Both sides run real tasks through Airflow's task runner (``dag.test()``, SQLite metadata DB in a
temporary ``AIRFLOW_HOME``) against the same emulator (its own process, scenario ``TEXT_SUMMARY``,
blocking ``POST /v1/scenario/run``), with the same connection:

* provider: ``DocifyRunScenarioOperator`` with its defaults (inputs validated against the scenario
  description, ``GET /v1/scenario/info``, reused from the cache of the connection's
  ``info_cache_seconds``; pending marker then result kept in one ``task_state_store`` key, the XCom
  dict pushed once). Before each of its tasks the cache's process memory is emptied, so a reused
  description comes from the cache's file, as it does for a new task process in a deployment;
* the same with ``info_cache_seconds=0``: the description read by every task (before issue 20);
* hand-written: a ``PythonOperator`` whose callable reads the connection and does
  ``requests.post(.../v1/scenario/run, json=...)``, ``raise_for_status()`` and returns the JSON.

(a) One small run: the task's own duration (task instance ``end_date - start_date``) minus the
    processing time the emulator reports for the run (``elapsedTime``), median of ``--repeat``
    DAG runs of one task each, the kinds interleaved. A fourth kind, the operator with
    ``multiple_outputs=True``, shows what per-key XComs cost: every XCom is one Execution API call
    (12 for the operator's dict and its keys against 1 for the default and the hand-written task).
(b) Throughput: ``--docs`` mapped task instances (``.partial(...).expand(...)``) in one DAG run;
    runs per minute = documents / wall time of ``dag.test()``.

``--latency SECONDS`` answers every request that much later (the emulator's ``latency`` fault), as a
service across a network does: each round trip a task saves is then worth that much.

The DAG runs happen in a child process (``dag.test()`` logs a lot); it prints its figures as JSON.

    .venv/bin/python benchmarks/bench_per_run_overhead.py [--repeat 10] [--docs 200] [--latency 0.05] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emulator_process, machine_info, machine_line

HERE = os.path.dirname(os.path.abspath(__file__))

CONN_ID = "docify_bench"
#: The same connection with the description cache switched off (``info_cache_seconds=0``).
NO_CACHE_CONN_ID = "docify_bench_no_cache"
MARK = "@@bench@@ "


# -- the hand-written alternative (what a user writes without the provider) ------------------------


def handwritten_run(text: str) -> dict[str, Any]:
    """A blocking Docify run with ``requests``, as one would write it in a PythonOperator."""
    import requests
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(CONN_ID)
    response = requests.post(
        f"{(conn.host or '').rstrip('/')}/v1/scenario/run",
        headers={"Authorization": f"Bearer {conn.password}"},
        json={"user": "bench", "inputs": {"text": {"text": text}, "language": {"text": "en"}}},
        timeout=600,
    )
    response.raise_for_status()
    body = response.json()
    if not body.get("isSuccess"):
        raise RuntimeError(f"Docify run failed: {body.get('errorMessage')}")
    return dict(body)


# -- the DAGs --------------------------------------------------------------------------------------


def _inputs(i: int) -> dict[str, str]:
    return {"text": f"Document {i}. It has two sentences.", "language": "en"}


def one_run_dag(kind: str) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_helpers import new_dag
    from docify_provider.operators.docify import DocifyRunScenarioOperator

    with new_dag(f"bench_one_{kind}") as dag:
        if kind == "provider":
            DocifyRunScenarioOperator(task_id="run", docify_conn_id=CONN_ID, inputs=_inputs(0))
        elif kind == "provider_no_cache":
            DocifyRunScenarioOperator(task_id="run", docify_conn_id=NO_CACHE_CONN_ID, inputs=_inputs(0))
        elif kind == "provider_multiple_outputs":
            DocifyRunScenarioOperator(task_id="run", docify_conn_id=CONN_ID, inputs=_inputs(0), multiple_outputs=True)
        else:
            PythonOperator(task_id="run", python_callable=handwritten_run, op_args=[_inputs(0)["text"]])
    return dag


def mapped_dag(kind: str, docs: int) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_helpers import new_dag
    from docify_provider.operators.docify import DocifyRunScenarioOperator

    with new_dag(f"bench_mapped_{kind}") as dag:
        if kind == "provider":
            DocifyRunScenarioOperator.partial(task_id="run", docify_conn_id=CONN_ID).expand(
                inputs=[_inputs(i) for i in range(docs)]
            )
        else:
            PythonOperator.partial(task_id="run", python_callable=handwritten_run).expand(
                op_args=[[_inputs(i)["text"]] for i in range(docs)]
            )
    return dag


def _elapsed_ms(outcome: Any, kind: str, map_index: int = -1) -> float:
    value = outcome.xcom("run", map_index=map_index)
    return float(value["elapsedTime"] if kind == "handwritten" else value["elapsed_ms"])


def child(base_url: str, home: str, repeat: int, docs: int) -> None:
    """Body of the measuring process: configure Airflow, run the DAGs, print the figures."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from airflow_helpers import configure_airflow, conn_json, run_dag
    from docify_provider._core.app_cache import CACHE
    from docify_provider.testing.keys import SUMMARY_KEY

    configure_airflow(Path(home))
    CACHE.folder = os.path.join(home, "app-cache")  # starts empty
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = conn_json(base_url, SUMMARY_KEY)
    os.environ[f"AIRFLOW_CONN_{NO_CACHE_CONN_ID.upper()}"] = conn_json(base_url, SUMMARY_KEY, info_cache_seconds=0)
    kinds = ("provider", "provider_no_cache", "provider_multiple_outputs", "handwritten")
    for kind in kinds:  # warm-up: imports, first connection, DB caches
        if run_dag(one_run_dag(kind)).dag_state != "success":
            raise SystemExit(f"warm-up run of {kind} failed")
    single: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(repeat):
        for kind in kinds:
            CACHE.clear_memory()  # a task process of a deployment starts with none
            outcome = run_dag(one_run_dag(kind))
            if outcome.dag_state != "success":
                raise SystemExit(f"{kind} run failed")
            ti = outcome.ti("run")
            task_ms = (ti.end_date - ti.start_date).total_seconds() * 1000
            single[kind].append({"task_ms": task_ms, "server_ms": _elapsed_ms(outcome, kind)})
    mapped: dict[str, dict[str, float]] = {}
    for kind in ("provider", "handwritten"):
        dag = mapped_dag(kind, docs)
        started = time.perf_counter()
        outcome = run_dag(dag)
        wall = time.perf_counter() - started
        states = outcome.states()
        ok = sum(1 for (task, _), state in states.items() if task == "run" and "success" in str(state))
        if outcome.dag_state != "success" or ok != docs:
            raise SystemExit(f"mapped {kind}: {ok}/{docs} task instances succeeded ({outcome.dag_state})")
        mapped[kind] = {"docs": docs, "wall_seconds": wall, "runs_per_minute": docs / wall * 60}
    print(MARK + json.dumps({"single": single, "mapped": mapped}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="single-run DAG runs per kind")
    parser.add_argument("--docs", type=int, default=200, help="mapped documents per kind")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every answer of the emulator waits")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.repeat, args.docs)
        return 0

    print(machine_line())
    with (
        tempfile.TemporaryDirectory(prefix="docify-bench-home-") as home,
        emulator_process(latency=args.latency) as base_url,
    ):
        out = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                base_url,
                home,
                "--repeat",
                str(args.repeat),
                "--docs",
                str(args.docs),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
            env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        )
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode or not lines:
        print(out.stdout[-2000:], out.stderr[-4000:], sep="\n")
        raise SystemExit(f"the measuring process failed ({out.returncode})")
    data = json.loads(lines[-1][len(MARK) :])
    single, mapped = data["single"], data["mapped"]

    def med(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in single[kind])

    def overhead(kind: str) -> float:
        return statistics.median(r["task_ms"] - r["server_ms"] for r in single[kind])

    distant = f", every answer {args.latency * 1000:g} ms late" if args.latency else ""
    print(
        f"(a) one small blocking run (TEXT_SUMMARY) under dag.test(){distant}, median of {args.repeat} DAG runs: "
        "task duration minus the emulator's processing time"
    )
    print(f"{'task':<44}{'task duration':>15}{'emulator':>11}{'overhead':>11}")
    labels = {
        "provider": "DocifyRunScenarioOperator",
        "provider_no_cache": "  the same with info_cache_seconds=0",
        "provider_multiple_outputs": "  the same with multiple_outputs=True",
        "handwritten": "PythonOperator + requests.post",
    }
    for kind in ("provider", "provider_no_cache", "provider_multiple_outputs", "handwritten"):
        print(
            f"{labels[kind]:<44}{med(kind, 'task_ms'):>12.0f} ms{med(kind, 'server_ms'):>8.0f} ms"
            f"{overhead(kind):>8.0f} ms"
        )
    ratio_a = overhead("provider") / max(overhead("handwritten"), 0.1)
    ratio_no_cache = overhead("provider_no_cache") / max(overhead("handwritten"), 0.1)
    print(f"ratio provider / hand-written overhead: {ratio_a:.2f} (info_cache_seconds=0: {ratio_no_cache:.2f})")
    print()
    print(f"(b) {args.docs} mapped documents in one dag.test() run (one task instance each, run one after another)")
    print(f"{'task':<44}{'wall time':>15}{'runs/min':>11}")
    for kind in ("provider", "handwritten"):
        m = mapped[kind]
        print(f"{labels[kind]:<44}{m['wall_seconds']:>13.1f} s{m['runs_per_minute']:>11.0f}")
    ratio_b = mapped["provider"]["runs_per_minute"] / mapped["handwritten"]["runs_per_minute"]
    print(f"ratio provider / hand-written runs per minute: {ratio_b:.2f}")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine_info(),
                    "single": {k: {"task_ms": med(k, "task_ms"), "overhead_ms": overhead(k)} for k in single},
                    "mapped": mapped,
                    "ratio_overhead": ratio_a,
                    "ratio_overhead_no_cache": ratio_no_cache,
                    "latency": args.latency,
                    "ratio_runs_per_minute": ratio_b,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
