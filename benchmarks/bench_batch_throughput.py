"""Batch throughput on a real deployment: the batch operator against mapped single-run tasks (issue 20).

A real Airflow deployment (``tests/deployment.py``: scheduler, dag processor, triggerer and API server
as separate processes; LocalExecutor; SQLite) runs one DAG run per configuration, **one after the
other** (never two at once), against the Dify emulator in its own process, whose Long Job app runs
``--seconds`` (5) per document and which answers 429 ``too_many_requests`` beyond
``--server-cap`` (20) running runs: the service limit is cap x 3600 / seconds = 14,400 documents an
hour. Before anything is measured a warm-up DAG run (a 2-document batch and 2 mapped deferred tasks)
pays the deployment's one-off costs, as a long-running deployment has (``--no-warm-up`` measures cold).
Configurations (``--configs``, DAGs in ``benchmarks/batch_throughput_dag.py``):

* ``batch-deferrable``: ``DifyBatchWorkflowOperator`` (deferrable=True, the default: one trigger holds
  every stream of the batch, no worker slot waits);
* ``batch-worker``: ``DifyBatchWorkflowOperator(deferrable=False)``;
* ``mapped-blocking``: ``DifyRunWorkflowOperator`` mapped over the documents;
* ``mapped-deferrable``: ``DifyStreamWorkflowOperator(deferrable=True)`` mapped over the documents;
* ``mapped-handwritten``: the baseline of issue 20 item 7, a ``@task`` mapped over the documents that
  does what a careful hand-written task does: the key from the same connection, one blocking
  ``requests.post`` to ``/workflows/run``, raise on non-2xx, return the outputs (no retry, no ledger);
  not in the default ``--configs``: it is a comparison, not a way to run a batch
  (``--configs mapped-blocking,mapped-handwritten``).

The batches get ``max_concurrency=--max-concurrency`` (32, above the cap: the admission limiter has to
find it). The mapped tasks run in a pool of cap slots that counts deferred tasks and with the DAG's
``max_active_tasks`` = cap, so they stay under the server's cap as the docs advise; the deployment's
``parallelism`` is 32 (Airflow's default).

    .venv/bin/python benchmarks/bench_batch_throughput.py --docs 200 \\
        [--configs batch-deferrable,batch-worker,mapped-blocking,mapped-deferrable] [--seconds 5] \\
        [--server-cap 20] [--max-concurrency 32] [--json]

Measured per configuration:

* **wall**: first task start to last task end of the DAG run (task instances from the REST API);
  documents/hour = documents / wall, and its fraction of the service limit;
* **Airflow CPU seconds per document**: user + system CPU of every Airflow process - the four
  components and everything they fork (executor workers, task supervisors and task processes, dag
  parsing processes, the API server's workers) - from the trigger to the end of the DAG run, divided
  by the documents. Method: each component is started as a process of its own (the root of a tree);
  ``/proc/<pid>/stat`` gives per process ``utime + stime`` (its own CPU) and ``cutime + cstime`` (the
  CPU of its children that exited and were reaped, with theirs). The sum of all four over every
  **live** process of the trees counts each process once: a live one by its own fields, an exited
  one inside the ``cutime`` of the live ancestor that reaped it (Airflow reaps its children: the
  supervisor its task process, the executor its workers). The figure is the difference of that sum
  after and before the run. The emulator, and this script (which polls the REST API once a second),
  are no part of the trees; the API server's answers to that polling are (a few ms each). The idle
  rate of the deployment (CPU per second with nothing running, measured before the first run) is
  printed too: at 200 documents it is a large part of the batch's figure;
* **peak memory**: the largest sum of the PSS of those processes (``smaps_rollup``, sampled every 2 s:
  a page shared by k processes counts 1/k, so forked processes are not counted k times), and the
  largest sum of their RSS (every 0.5 s; shared pages counted once per process: an upper bound);
* **runs per document**: the emulator's runs, counted per document label (``GET /_emulator/runs``):
  every document must have exactly one; **failed by 429**: documents that ended failed with a 429 in
  their error (batch items) or task log (mapped tasks); **429 answers**: how many run requests the
  server turned away during the run (not started: safe to send again);
* **store writes per document** (batches): the ledger's and results' store writes, from the batch's
  final counts (``store_writes``), over the documents.

Goal (issue 20): at least 0.9 of the service limit, at most 0.05 Airflow CPU seconds per document,
every document run exactly once, none failed by a 429. The script takes minutes and loads the
machine: run it on a quiet one (the load average at start is printed).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from docify_provider.testing.dify import LONG_APP_KEY

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the deployment harness of the deployment tests (tests/deployment.py): the same deployment, not a copy
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from _common import emulator_process, machine_info, machine_line, smaps_rollup_kb

from deployment import Deployment, api, running_deployment, task_xcom

HERE = Path(__file__).resolve().parent
#: The configurations; each one's DAG in ``batch_throughput_dag.py`` is ``bench_<config with _>``.
CONFIGS = ("batch-deferrable", "batch-worker", "mapped-blocking", "mapped-deferrable", "mapped-handwritten")
#: ``--configs`` by default: the ways to run a batch with the provider (not the hand-written baseline).
DEFAULT_CONFIGS = CONFIGS[:4]
DAG_IDS = {config: "bench_" + config.replace("-", "_") for config in CONFIGS}
#: Run once before anything is measured (``batch_throughput_dag.py`` says why), unless ``--no-warm-up``.
WARM_UP_DAG = "bench_warm_up"
GOAL_FRACTION = 0.9
GOAL_CPU_PER_DOC = 0.05
POOL = "dify_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the Airflow process trees ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, CPU ticks: utime + stime + cutime + cstime, RSS bytes) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    ppid = int(fields[1])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ppid, ticks, int(fields[21]) * PAGE


class ProcessTrees:
    """The live processes descending from ``roots`` (the components), summed (module docstring)."""

    def __init__(self, roots: list[int], names: list[str] | None = None) -> None:
        self.roots = roots
        self.names = names or [str(pid) for pid in roots]

    def cpu_by_root(self) -> dict[str, float]:
        """CPU seconds of each component's tree (the component and everything it forked), by name."""
        stats, children = self._table()
        return {
            name: sum(stats[pid][1] for pid in self._tree(stats, children, [root])) / CLK_TCK
            for name, root in zip(self.names, self.roots, strict=True)
        }

    def sample(self) -> tuple[float, int, int]:
        """(CPU seconds, RSS bytes, process count) summed over every live process of the trees."""
        stats, seen = self._walk()
        ticks = sum(stats[pid][1] for pid in seen)
        return ticks / CLK_TCK, sum(stats[pid][2] for pid in seen), len(seen)

    def pss(self) -> int:
        """PSS bytes summed over the trees (``smaps_rollup``: a page shared by k processes counts 1/k)."""
        total = 0
        for pid in self._walk()[1]:
            with contextlib.suppress(OSError, KeyError):
                total += smaps_rollup_kb(pid)["Pss"] * 1024
        return total

    def _walk(self) -> tuple[dict[int, tuple[int, int, int]], set[int]]:
        stats, children = self._table()
        return stats, self._tree(stats, children, self.roots)

    @staticmethod
    def _table() -> tuple[dict[int, tuple[int, int, int]], dict[int, list[int]]]:
        """Every process's ``_stat`` and the children of each pid."""
        stats: dict[int, tuple[int, int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))) is not None:
                stats[int(entry)] = stat
        children: dict[int, list[int]] = collections.defaultdict(list)
        for pid, (ppid, _, _) in stats.items():
            children[ppid].append(pid)
        return stats, children

    @staticmethod
    def _tree(stats: dict[int, Any], children: dict[int, list[int]], roots: list[int]) -> set[int]:
        """The live processes of the trees under ``roots``."""
        seen: set[int] = set()
        todo = [pid for pid in roots if pid in stats]
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.add(pid)
                todo.extend(children.get(pid, ()))
        return seen


class Sampler(threading.Thread):
    """Peak summed RSS of the trees, every ``every`` seconds until stopped."""

    def __init__(self, trees: ProcessTrees, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.trees, self.every = trees, every
        self.peak = 0
        self.peak_procs = 0
        self.peak_pss = 0
        self._done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._done.is_set():
            _, rss, procs = self.trees.sample()
            self.peak = max(self.peak, rss)
            self.peak_procs = max(self.peak_procs, procs)
            if n % 4 == 0:  # PSS costs a page-table walk per process: every 2 s
                self.peak_pss = max(self.peak_pss, self.trees.pss())
            n += 1
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join(10)


# -- one configuration ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    config: str
    docs: int
    state: str
    wall_s: float
    per_hour: float
    of_limit: float
    cpu_s: float
    cpu_per_doc: float
    peak_mb: float
    peak_pss_mb: float
    peak_procs: int
    once: int  # documents with exactly one run
    missing: int  # documents with no run
    extra_runs: int  # runs beyond one per document
    failed_429: int
    answers_429: int
    store_writes: int | None
    retried: int  # task instances that needed more than one try
    counts: dict[str, Any] | None
    cpu_by_component: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return self.once == self.docs and not self.extra_runs


def _when(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def task_instances(dep: Deployment, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run (paged: 2,000 mapped ones take two pages)."""
    found: list[dict[str, Any]] = []
    while True:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        page = api(dep, "GET", path, params={"limit": 1000, "offset": len(found)}) or {}
        batch = page.get("task_instances") or []
        found.extend(batch)
        if not batch or len(found) >= int(page.get("total_entries") or 0):
            return found


def emulator_runs(control: str) -> tuple[list[dict[str, Any]], int]:
    page = httpx.get(f"{control}/_emulator/runs", timeout=60).json()
    return page["runs"], int(page["runs_turned_away"])


def failed_by_429(dep: Deployment, dag_id: str, run_id: str, tis: list[dict[str, Any]], xcom: Any) -> int:
    """Documents that ended failed because of a 429 (batch: item errors; mapped: their task logs)."""
    marks = ("429", "too_many_requests", "NotStarted")
    if isinstance(xcom, dict):
        items = xcom.get("items") or [
            item for key in xcom.get("item_keys") or [] for item in task_xcom(dep, dag_id, run_id, "batch", key) or []
        ]
        return sum(
            1 for it in items if it.get("status") != "succeeded" and any(m in str(it.get("error")) for m in marks)
        )
    count = 0
    for ti in tis:
        if ti.get("state") == "success":
            continue
        folder = dep.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
        logs = folder / f"map_index={ti['map_index']}" if ti.get("map_index", -1) >= 0 else folder
        text = "\n".join(p.read_text(errors="replace") for p in logs.glob("*.log")) if logs.is_dir() else ""
        count += any(m in text for m in marks)
    return count


def run_config(
    dep: Deployment, trees: ProcessTrees, control: str, config: str, docs: int, limit_per_hour: float, timeout: float
) -> Result:
    dag_id = DAG_IDS[config]
    _, turned_away_before = emulator_runs(control)
    sampler = Sampler(trees)
    cpu_before, _, _ = trees.sample()
    split_before = trees.cpu_by_root()
    sampler.start()
    run_id = f"bench__{config}__{int(time.time() * 1000)}"
    body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": {}}
    if not api(dep, "POST", f"/dags/{dag_id}/dagRuns", json=body):
        raise RuntimeError(f"triggering {dag_id} failed; see {dep.logs / 'api-server.log'}")
    try:
        state = wait_for_run(dep, dag_id, run_id, timeout)
    finally:
        cpu_after, _, _ = trees.sample()
        split_after = trees.cpu_by_root()
        sampler.stop()
    tis = task_instances(dep, dag_id, run_id)
    starts = [t for ti in tis if (t := _when(ti.get("start_date"))) is not None]
    ends = [t for ti in tis if (t := _when(ti.get("end_date"))) is not None]
    wall = max(ends) - min(starts) if starts and ends else float("nan")
    runs, turned_away_after = emulator_runs(control)
    per_label = collections.Counter(
        str(r["inputs"].get("label")) for r in runs if str(r["inputs"].get("label", "")).startswith(f"{config}-")
    )
    labels = [f"{config}-{i}" for i in range(docs)]
    xcom = task_xcom(dep, dag_id, run_id, "batch") if config.startswith("batch") else None
    counts = xcom.get("counts") if isinstance(xcom, dict) else None
    cpu = cpu_after - cpu_before
    per_hour = docs * 3600 / wall if wall > 0 else 0.0
    return Result(
        config=config,
        docs=docs,
        state=state,
        wall_s=round(wall, 1),
        per_hour=round(per_hour),
        of_limit=round(per_hour / limit_per_hour, 3),
        cpu_s=round(cpu, 1),
        cpu_per_doc=round(cpu / docs, 3),
        peak_mb=round(sampler.peak / 2**20),
        peak_pss_mb=round(sampler.peak_pss / 2**20),
        peak_procs=sampler.peak_procs,
        once=sum(1 for label in labels if per_label[label] == 1),
        missing=sum(1 for label in labels if per_label[label] == 0),
        extra_runs=sum(max(0, n - 1) for n in per_label.values()),
        failed_429=failed_by_429(dep, dag_id, run_id, tis, xcom),
        answers_429=turned_away_after - turned_away_before,
        store_writes=int(counts["store_writes"]) if counts and "store_writes" in counts else None,
        retried=sum(1 for ti in tis if int(ti.get("try_number") or 1) > 1),
        counts=counts,
        cpu_by_component={name: round(split_after[name] - split_before.get(name, 0.0), 1) for name in split_after},
    )


# -- the deployment -----------------------------------------------------------------------------------------


def wait_for_run(dep: Deployment, dag_id: str, run_id: str, timeout: float) -> str:
    """The run's end state; fails at once (naming its log) when a component died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = dep.run_state(dag_id, run_id)
        if state in ("success", "failed"):
            return state
        dead = [name for name, proc in dep.procs.items() if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} died during the run; see {dep.logs}")
        time.sleep(1)
    raise TimeoutError(f"DAG run {run_id} did not end within {timeout:.0f}s; logs in {dep.logs}")


def sqlite_patience(home: Path, seconds: int = 60) -> dict[str, str]:
    """Settings under which every component waits ``seconds`` for SQLite's lock (not 5 s): on a loaded
    machine the default made the scheduler, dag processor and triggerer die of "database is locked"."""
    folder = home / "settings"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docify_bench_sqlite.py").write_text(f"CONNECT_ARGS = {{'timeout': {seconds}}}\n")
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "docify_bench_sqlite.CONNECT_ARGS", "PYTHONPATH": path}


def wait_quiet(trees: ProcessTrees, *, seconds: float = 3.0, cores: float = 0.3, timeout: float = 60) -> float:
    """Wait until the deployment has used under ``cores`` for ``seconds`` (the last run's tail is over);
    returns its CPU rate (cores) over that window."""
    deadline = time.monotonic() + timeout
    rate = float("nan")
    while time.monotonic() < deadline:
        before, _, _ = trees.sample()
        time.sleep(seconds)
        after, _, _ = trees.sample()
        rate = (after - before) / seconds
        if rate < cores:
            break
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200, help="documents per DAG run (default 200)")
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated, of {', '.join(CONFIGS)} (default: all but mapped-handwritten)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="service time of one run (default 5)")
    parser.add_argument("--server-cap", type=int, default=20, help="the emulator's max_active_requests (default 20)")
    parser.add_argument("--max-concurrency", type=int, default=32, help="the batches' max_concurrency (default 32)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a DAG run may take (default 1800)")
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="measure from a cold deployment (by default a 2-document batch and 2 mapped deferred tasks run first)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the deployment's folder (logs) and print it")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown --configs {unknown}; choose from {', '.join(CONFIGS)}")
    limit_per_hour = args.server_cap * 3600 / args.seconds
    machine = machine_info()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if not args.json:
        print(machine_line(), flush=True)
    home = Path(tempfile.mkdtemp(prefix="docify-bench-batch-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(HERE / "batch_throughput_dag.py", dags / "batch_throughput_dag.py")
    emulator_args = ("--mode", "dify", "--max-active-requests", str(args.server_cap), "--ping-interval", "10")
    results: list[Result] = []
    idle = float("nan")
    try:
        with emulator_process(*emulator_args, api_path="/v1") as base_url:
            control = base_url.removesuffix("/v1")
            env = {
                "AIRFLOW__CORE__PARALLELISM": "32",
                # Airflow's defaults (the test harness beats every second)
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
                "DOCIFY_BENCH_DOCS": str(args.docs),
                "DOCIFY_BENCH_SECONDS": str(args.seconds),
                "DOCIFY_BENCH_MAX_CONCURRENCY": str(args.max_concurrency),
                "DOCIFY_BENCH_POOL": POOL,
                "DOCIFY_BENCH_POOL_SLOTS": str(args.server_cap),
                "DOCIFY_BENCH_RESULTS": str(home / "results"),
                **sqlite_patience(home),
            }
            connection = {"conn_type": "dify", "host": base_url, "password": LONG_APP_KEY}
            with running_deployment(
                home / "airflow", dags_folder=dags, connections={"dify_bench": connection}, env=env
            ) as dep:
                pool = {"name": POOL, "slots": args.server_cap, "include_deferred": True}
                if not api(dep, "POST", "/pools", json=pool):
                    raise RuntimeError("creating the pool failed")
                for config in configs:
                    dep.wait_for_dag(DAG_IDS[config], timeout=300)
                trees = ProcessTrees([proc.pid for proc in dep.procs.values()], list(dep.procs))
                if args.warm_up:
                    dep.wait_for_dag(WARM_UP_DAG, timeout=300)
                    warm_run = f"warm_up__{int(time.time() * 1000)}"
                    body = {"dag_run_id": warm_run, "logical_date": None, "conf": {}}
                    if not api(dep, "POST", f"/dags/{WARM_UP_DAG}/dagRuns", json=body):
                        raise RuntimeError("triggering the warm-up DAG failed")
                    if wait_for_run(dep, WARM_UP_DAG, warm_run, args.timeout) != "success":
                        raise RuntimeError(f"the warm-up DAG run failed; see {dep.logs}")
                wait_quiet(trees, seconds=5)
                idle = wait_quiet(trees, seconds=10)
                if not args.json:
                    print(
                        f"deployment idle: {idle:.3f} cores (Airflow CPU per second with nothing running)", flush=True
                    )
                for config in configs:
                    wait_quiet(trees)
                    result = run_config(dep, trees, control, config, args.docs, limit_per_hour, args.timeout)
                    results.append(result)
                    if not args.json:
                        print(
                            f"  {config}: {result.state}, {result.wall_s}s, {result.per_hour:,.0f} documents/h",
                            flush=True,
                        )
    finally:
        if args.keep:
            print(f"deployment folder kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    report = {
        "started": started,
        "machine": machine,
        "docs": args.docs,
        "seconds": args.seconds,
        "server_cap": args.server_cap,
        "limit_per_hour": limit_per_hour,
        "max_concurrency": args.max_concurrency,
        "idle_cores": round(idle, 3),
        "results": [dataclasses.asdict(r) | {"exactly_once": r.exactly_once} for r in results],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report, results)
    return 0 if all(r.state == "success" and r.exactly_once and not r.failed_429 for r in results) else 1


def print_table(report: dict[str, Any], results: list[Result]) -> None:
    print()
    print(
        f"{report['docs']} documents per DAG run, each run {report['seconds']:g} s of service time, server cap "
        f"{report['server_cap']} (service limit {report['limit_per_hour']:,.0f} documents/h); configurations run "
        f"one after the other in one deployment; measured {report['started']}; deployment idle "
        f"{report['idle_cores']:.3f} cores"
    )
    print()
    print(
        "| configuration | wall | documents/h | of the limit | Airflow CPU per document | peak memory (PSS; RSS) "
        "| runs per document | failed by 429 | 429 answers | store writes per document | outcome |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        runs = "exactly 1" if r.exactly_once else f"{r.once} once, {r.missing} none, {r.extra_runs} extra"
        writes = f"{r.store_writes / r.docs:.2f}" if r.store_writes is not None else "-"
        print(
            f"| {r.config} | {r.wall_s:.0f} s | {r.per_hour:,.0f} | {r.of_limit:.0%} | {r.cpu_per_doc:.3f} s "
            f"| {r.peak_pss_mb:,.0f} MB; {r.peak_mb:,.0f} MB ({r.peak_procs} processes) | {runs} | {r.failed_429} "
            f"| {r.answers_429} | {writes} | {r.state}{f', {r.retried} task(s) retried' if r.retried else ''} |"
        )
    print()
    for r in results:
        split = ", ".join(f"{name} {cpu:.1f}" for name, cpu in r.cpu_by_component.items())
        print(f"- {r.config}: Airflow CPU seconds by component (with what it forked): {split}")
    print()
    print(
        f"Goal: >= {GOAL_FRACTION:.0%} of the limit ({GOAL_FRACTION * report['limit_per_hour']:,.0f} documents/h), "
        f"<= {GOAL_CPU_PER_DOC} Airflow CPU s per document, every document run exactly once, none failed by a 429."
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
