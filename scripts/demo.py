"""The main job: run the invoice pipeline end to end on a fresh machine, then say where results landed.

By default it starts the bundled Docify emulator and makes a few sample invoices. With
``DOCIFY_API_KEY`` set (and optionally ``DOCIFY_BASE_URL`` and ``DOCIFY_INPUT_DIR``) it runs against
real Docify instead. Everything goes under ``out/`` (a throwaway ``AIRFLOW_HOME`` with SQLite, the
results database and the attachments); each run starts from a clean ``out/``.

``--all`` also runs the summary pipeline, the Dify document pipeline, the nightly run of the apps
it names (on the bundled Dify account-API emulator) and the human review (on the
bundled Dify emulator; the form is answered in Dify by a thread, as a reviewer would), and the
three quick starts of ``docs/getting-started/`` as their pages run them (connections from
environment variables; the account API's after ``airflow-dify login``), each
``airflow dags test`` bounded by ``--timeout`` seconds, prints a summary of them, and fails unless
every pipeline did what it promises; ``--jobs 2`` runs two of them at a time (each ``airflow dags
test`` is one process, on one core), each lane in an ``AIRFLOW_HOME`` of its own;
the test command uses it (``--out``, another interpreter's venv) to run the example pipelines
under ``airflow dags test`` on every Airflow line the package claims.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from docify_provider.testing.samples import make_sample_invoices

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: Seconds one ``airflow dags test`` may take (``--timeout``).
DAG_TEST_TIMEOUT = 300.0


@contextlib.contextmanager
def docify_backend() -> Iterator[tuple[str, str, object | None]]:
    """(base URL, API key, emulator or None): real Docify when DOCIFY_API_KEY is set."""
    key = os.environ.get("DOCIFY_API_KEY")
    if key:
        yield os.environ.get("DOCIFY_BASE_URL", "https://console.docify.jp/docify"), key, None
        return
    from docify_provider.testing import INVOICE_KEY, DocifyEmulator

    with DocifyEmulator() as emulator:
        yield emulator.base_url, INVOICE_KEY, emulator


def dags_test(dag_id: str, conf: dict[str, object], env: dict[str, str], log_file: Path) -> int:
    """``airflow dags test`` of one example pipeline, its output kept in ``log_file``; at most
    ``DAG_TEST_TIMEOUT`` seconds (then it is killed and counts as failed)."""
    with open(log_file, "w") as log:
        try:
            proc = subprocess.run(
                [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=DAG_TEST_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            print(f"FAILED: airflow dags test {dag_id} took more than {DAG_TEST_TIMEOUT:g} s; full log: {log_file}")
            return 124
    if proc.returncode != 0:
        print("\n".join(log_file.read_text(errors="replace").splitlines()[-60:]))
        print(f"FAILED: airflow dags test {dag_id} exited {proc.returncode}; full log: {log_file}")
    return proc.returncode


def conn(conn_type: str, host: str, password: str | None = None) -> str:
    """An ``AIRFLOW_CONN_...`` value (JSON form)."""
    fields = {"conn_type": conn_type, "host": host}
    if password is not None:
        fields["password"] = password
    return json.dumps(fields)


def verdict(found_line: str, ok: bool, expected: str, log_file: Path) -> int:
    """Print a pipeline's result line and, when it is not what was expected, why, with its log."""
    print(found_line)
    if not ok:
        print(f"FAILED: expected {expected}; full log: {log_file}")
        return 1
    return 0


def run_summary(env: dict[str, str], out: Path, emulator: object | None) -> int:
    """The summary pipeline; its published line must come from the scenario's json_result."""
    from docify_provider.testing import SUMMARY_KEY

    if emulator is None:
        print("==> example_docify_summary needs the emulator's summary scenario; skipped on real Docify")
        return 0
    env = {
        **env,
        "AIRFLOW_CONN_DOCIFY_SUMMARY": conn("docify", emulator.base_url, SUMMARY_KEY),  # type: ignore[attr-defined]
    }
    log_file = out / "dag-test-summary.log"
    print("==> Running example_docify_summary on the bundled Docify emulator")
    conf = {"text": "Airflow runs Docify. It works.", "language": "fr"}
    if rc := dags_test("example_docify_summary", conf, env, log_file):
        return rc
    want = "[fr] Airflow runs Docify. (5 words)"
    runs = emulator.runs_started(SUMMARY_KEY)  # type: ignore[attr-defined]
    found = want in log_file.read_text(errors="replace")
    return verdict(
        f"==> Summary published {want!r}: {'yes' if found else 'NO'}; emulator billed {runs} run(s)",
        found and runs == 1,
        "the published summary once and 1 run billed",
        log_file,
    )


def run_dify_documents(env: dict[str, str], out: Path) -> int:
    """The Dify document pipeline on the bundled Dify emulator: a row, a file and a run per document."""
    from docify_provider.testing.dify import DOCUMENT_APP_KEY, DifyEmulator

    inbox, results = out / "dify-inbox", out / "dify-results"
    inbox.mkdir(parents=True)
    results.mkdir(parents=True)
    for i, name in enumerate(("contract_a.txt", "memo_b.txt", "report_c.txt")):
        (inbox / name).write_text(f"Document {i}: quarterly figures and supplier terms.\n" * 40)
    db_path = results / "dify.db"
    log_file = out / "dag-test-dify.log"
    with DifyEmulator() as emulator:
        env = {
            **env,
            "AIRFLOW_CONN_DIFY_DOCUMENTS": conn("dify", emulator.base_url, DOCUMENT_APP_KEY),
            "AIRFLOW_CONN_DIFY_RESULTS_DB": conn("sqlite", str(db_path)),
        }
        print("==> Running example_dify_documents on the bundled Dify emulator")
        conf = {"input_dir": str(inbox), "output_dir": str(results)}
        if rc := dags_test("example_dify_documents", conf, env, log_file):
            return rc
        runs = emulator.runs_started(key=DOCUMENT_APP_KEY)
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT workflow_run_id, status, attachment FROM dify_documents").fetchall()
    files = [p for p in (results / "attachments").rglob("*") if p.is_file()]
    return verdict(
        f"==> Dify: {len(rows)} row(s) in table dify_documents, {len(files)} output file(s), {runs} run(s) billed",
        len(rows) == 3 and len(files) == 3 and runs == 3 and all(r[1] == "succeeded" for r in rows),
        "3 succeeded rows, 3 output files and 3 runs billed",
        log_file,
    )


def run_dify_nightly(env: dict[str, str], out: Path) -> int:
    """The nightly example's named apps on the bundled account-API emulator: one run per fillable app."""
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, DifyOpenAPIEmulator

    log_file = out / "dag-test-dify-nightly.log"
    with DifyOpenAPIEmulator() as emulator:
        env = {
            **env,
            "AIRFLOW_CONN_DIFY_ACCOUNT": conn("dify-openapi", emulator.base_url, ACCOUNT_TOKEN),
        }
        print("==> Running example_dify_nightly on the bundled Dify account-API emulator")
        conf = {
            "app_inputs": {
                "Text Writer": {"topic": "what changed in the warehouse today"},
                "Completion Writer": {"topic": "tomorrow's delivery plan"},
                "Chat Assistant": {"query": "Summarise today's open support tickets."},
                "Long Job": {"seconds": 0.5},
            }
        }
        if rc := dags_test("example_dify_nightly", conf, env, log_file):
            return rc
        runs = emulator.runs_started(ACCOUNT_TOKEN)
    text = log_file.read_text(errors="replace")
    want = "Nightly Dify batch: 4 app(s) ran, 1 skipped"
    found = want in text and "Skipping app 'Document Summary'" in text
    return verdict(
        f"==> Nightly: {want!r} logged: {'yes' if found else 'NO'}; emulator billed {runs} run(s)",
        found and runs == 4,
        "4 nightly apps run (1 skipped) and 4 runs billed",
        log_file,
    )


def run_dify_review(env: dict[str, str], out: Path) -> int:
    """The human review on the bundled Dify emulator; the reviewer approves in Dify (a thread)."""
    from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY, DifyEmulator

    log_file = out / "dag-test-dify-review.log"
    with DifyEmulator() as emulator:
        env = {
            **env,
            "AIRFLOW_CONN_DIFY_REVIEW": conn("dify", emulator.base_url, HUMAN_INPUT_APP_KEY),
            "DIFY_REVIEW_POLL_SECONDS": "0.5",
        }
        print("==> Running example_dify_human_review on the bundled Dify emulator (the reviewer answers in Dify)")
        reviewer = emulator.answer_when_paused("approve", {"comment": "ship it"}, timeout=DAG_TEST_TIMEOUT)
        rc = dags_test("example_dify_human_review", {"topic": "the spring catalogue"}, env, log_file)
        reviewer.join(timeout=5)
        runs = emulator.runs_started(key=HUMAN_INPUT_APP_KEY)
        if rc:
            return rc
    text = log_file.read_text(errors="replace")
    found = "Published the reviewed draft" in text and "Approved: the spring catalogue" in text
    return verdict(
        f"==> Review: approved in Dify, branch publish taken: {'yes' if found else 'NO'}; {runs} run(s) billed",
        reviewer.error is None and found and runs == 1 and "Sent the draft back" not in text,
        f"the approved draft published once (reviewer: {reviewer.error})",
        log_file,
    )


# -- the quick starts of docs/getting-started/, as their pages run them -----------------------------


def run_quickstart_docify(env: dict[str, str], out: Path) -> int:
    """quickstart_docify with only environment variables set, as docs/getting-started/docify.md does."""
    from docify_provider.testing import INVOICE_KEY, DocifyEmulator

    home = out / "quickstart-docify"
    (invoice,) = make_sample_invoices(home / "invoices", 1)
    log_file = out / "dag-test-quickstart-docify.log"
    with DocifyEmulator() as emulator:
        env = {
            **env,
            "AIRFLOW_CONN_DOCIFY_DEFAULT": conn("docify", emulator.base_url, INVOICE_KEY),
            "DOCIFY_INVOICE": str(invoice),
            "DOCIFY_OUTPUT_DIR": str(home / "docify-out"),
        }
        print("==> Running quickstart_docify on the bundled Docify emulator")
        if rc := dags_test("quickstart_docify", {}, env, log_file):
            return rc
        runs = emulator.runs_started()
    files = [p for p in (home / "docify-out").rglob("*") if p.is_file()]
    booked = "Billed: 10.5 cost points" in log_file.read_text(errors="replace")
    return verdict(
        f"==> Quick start Docify: booked with its cost: {'yes' if booked else 'NO'}; {len(files)} file(s); "
        f"{runs} run(s) billed",
        booked and len(files) == 1 and runs == 1,
        "the invoice booked with its cost, one produced file and 1 run billed",
        log_file,
    )


def text_writer_verdict(label: str, log_file: Path, runs: int) -> int:
    """The two Dify quick starts run the emulator's Text Writer app: its output published with its
    cost, and exactly one run billed."""
    text = log_file.read_text(errors="replace")
    published = "succeeded: Neutral notes on Airflow providers" in text and "Billed: " in text
    return verdict(
        f"==> Quick start {label}: output published with its cost: {'yes' if published else 'NO'}; "
        f"{runs} run(s) billed",
        published and runs == 1,
        "the Text Writer's output published with its cost and 1 run billed",
        log_file,
    )


def run_quickstart_dify_workflow(env: dict[str, str], out: Path) -> int:
    """quickstart_dify_workflow with only AIRFLOW_CONN_DIFY_DEFAULT set (docs/getting-started/dify-workflow.md)."""
    from docify_provider.testing.dify import TEXT_APP_KEY, DifyEmulator

    log_file = out / "dag-test-quickstart-dify-workflow.log"
    with DifyEmulator() as emulator:
        env = {**env, "AIRFLOW_CONN_DIFY_DEFAULT": conn("dify", emulator.base_url, TEXT_APP_KEY)}
        print("==> Running quickstart_dify_workflow on the bundled Dify emulator")
        if rc := dags_test("quickstart_dify_workflow", {}, env, log_file):
            return rc
        runs = emulator.runs_started()
    return text_writer_verdict("Dify workflow", log_file, runs)


def dify_login(emulator: Any, env: dict[str, str], log_file: Path) -> int:
    """``airflow-dify login`` as docs/getting-started/dify-account.md runs it; the code is approved
    in the emulator as the page's reader approves it on the /device page."""
    import re

    code = re.compile(r"enter the code: ([A-Z0-9]{4}-[A-Z0-9]{4})")
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "airflow-dify"), "login", "--host", emulator.base_url, "--no-browser"],
            env=env,
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            if found := code.search(line):
                emulator.approve(found.group(1))
        try:
            rc = proc.wait(timeout=DAG_TEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = 124
    if rc:
        print(log_file.read_text(errors="replace"))
        print(f"FAILED: airflow-dify login exited {rc}; full log: {log_file}")
    return rc


def run_quickstart_dify_account(env: dict[str, str], out: Path) -> int:
    """``airflow-dify login``, then quickstart_dify_account on the connection it wrote (no variable)."""
    from docify_provider.testing.dify_openapi import DifyOpenAPIEmulator

    log_file = out / "dag-test-quickstart-dify-account.log"
    env = {k: v for k, v in env.items() if k != "AIRFLOW_CONN_DIFY_OPENAPI_DEFAULT"}
    with DifyOpenAPIEmulator(device_poll_interval=1) as emulator:
        print("==> Logging in with airflow-dify login, then running quickstart_dify_account on the emulator")
        if rc := dify_login(emulator, env, out / "quickstart-dify-login.log"):
            return rc
        if rc := dags_test("quickstart_dify_account", {}, env, log_file):
            return rc
        runs = emulator.runs_started()
    return text_writer_verdict("Dify account", log_file, runs)


def timed(results: list[tuple[str, int, float]], name: str, step: Callable[[], int]) -> int:
    """Run one pipeline step, keeping (name, exit code, seconds) for the closing summary."""
    started = time.monotonic()
    rc = step()
    results.append((name, rc, time.monotonic() - started))
    return rc


class _LaneOutput:
    """``sys.stdout`` while pipelines run side by side: what a lane's thread prints is held until its
    pipeline ends, then written in one piece, so that no pipeline's lines interleave with another's."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.local = threading.local()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        chunks = getattr(self.local, "chunks", None)
        if chunks is None:
            return int(self.real.write(text))
        chunks.append(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self.local, "chunks", None) is None:
            self.real.flush()

    def hold(self) -> None:
        self.local.chunks = []

    def release(self) -> None:
        chunks, self.local.chunks = self.local.chunks or [], None
        with self.lock:
            self.real.write("".join(chunks))
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def run_steps(
    steps: list[tuple[str, Callable[[dict[str, str]], int]]],
    env: dict[str, str],
    jobs: int,
    results: list[tuple[str, int, float]],
) -> int:
    """Run every step (each gets the environment of its lane), ``jobs`` at a time, each even when an
    earlier one failed, so that the summary shows them all; the first non-zero exit code, else 0.

    Each lane after the first runs in an ``AIRFLOW_HOME`` of its own with a copy of the migrated
    ``airflow.db`` (and no copy of ``airflow.cfg``, which names the first home's database file): two
    ``airflow dags test`` processes on one SQLite file both write each DAG's row when they parse the
    DAG folder, and the second fails on the unique key.
    """
    if jobs <= 1:
        codes = [timed(results, name, lambda step=step: step(env)) for name, step in steps]  # type: ignore[misc]
        return next((rc for rc in codes if rc), 0)
    home = Path(env["AIRFLOW_HOME"])
    lanes = [env]
    for lane in range(2, min(jobs, len(steps)) + 1):
        copy = home.with_name(f"{home.name}-{lane}")
        copy.mkdir()
        shutil.copyfile(home / "airflow.db", copy / "airflow.db")
        database = f"sqlite:///{copy / 'airflow.db'}"
        lanes.append({**env, "AIRFLOW_HOME": str(copy), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database})
    pending, lock, codes_by_name = deque(steps), threading.Lock(), {}
    output = _LaneOutput(sys.stdout)

    def lane_worker(lane_env: dict[str, str]) -> None:
        while True:
            with lock:
                if not pending:
                    return
                name, step = pending.popleft()
            output.hold()
            try:
                codes_by_name[name] = timed(results, name, lambda step=step: step(lane_env))  # type: ignore[misc]
            except Exception:  # one pipeline's crash must not hide the others' results
                traceback.print_exc(file=sys.stdout)
                codes_by_name[name] = 1
            finally:
                output.release()

    sys.stdout = output
    try:
        threads = [threading.Thread(target=lane_worker, args=(lane_env,)) for lane_env in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.stdout = output.real
    order = {name: i for i, (name, _step) in enumerate(steps)}
    results.sort(key=lambda result: order.get(result[0], len(order)))
    return next((codes_by_name.get(name, 1) for name, _step in steps if codes_by_name.get(name, 1)), 0)


def print_summary(results: list[tuple[str, int, float]]) -> None:
    print("\n==> Example pipelines")
    for name, rc, seconds in results:
        print(f"    {name:<28} {'ok' if rc == 0 else f'FAILED ({rc})':<12} {seconds:6.1f} s")


def main(argv: list[str] | None = None) -> int:
    global DAG_TEST_TIMEOUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="working folder (emptied first)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also run the summary and the Dify pipelines and the quick starts; check every one strictly",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --all: pipelines run at a time (each airflow dags test is one process, on one core)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DAG_TEST_TIMEOUT, help="seconds each airflow dags test may take"
    )
    args = parser.parse_args(argv)
    DAG_TEST_TIMEOUT = args.timeout
    timings: list[tuple[str, int, float]] = []
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    home, inbox, results = out / "airflow-home", out / "inbox", out / "results"
    home.mkdir(parents=True)
    input_dir = Path(os.environ["DOCIFY_INPUT_DIR"]) if os.environ.get("DOCIFY_INPUT_DIR") else inbox
    if input_dir == inbox:
        make_sample_invoices(inbox)
    db_path = results / "invoices.db"
    results.mkdir(parents=True)

    with docify_backend() as (base_url, key, emulator):
        where = "the bundled Docify emulator" if emulator else f"Docify at {base_url}"
        print(f"==> Running example_docify_invoices on {where}")
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_DOCIFY_INVOICES": conn("docify", base_url, key),
            "AIRFLOW_CONN_DOCIFY_RESULTS_DB": conn("sqlite", str(db_path)),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        conf = {"input_dir": str(input_dir), "output_dir": str(results)}
        log_file = out / "dag-test.log"
        invoices = "example_docify_invoices"
        steps: list[tuple[str, Callable[[dict[str, str]], int]]] = [
            (invoices, lambda env: dags_test(invoices, conf, env, log_file))
        ]
        if args.all:
            steps += [
                ("example_docify_summary", lambda env: run_summary(env, out, emulator)),
                ("example_dify_documents", lambda env: run_dify_documents(env, out)),
                ("example_dify_nightly", lambda env: run_dify_nightly(env, out)),
                ("example_dify_human_review", lambda env: run_dify_review(env, out)),
                ("quickstart_docify", lambda env: run_quickstart_docify(env, out)),
                ("quickstart_dify_workflow", lambda env: run_quickstart_dify_workflow(env, out)),
                ("quickstart_dify_account", lambda env: run_quickstart_dify_account(env, out)),
            ]
        rc = run_steps(steps, env, args.jobs if args.all else 1, timings)
        runs = emulator.runs_started(key) if emulator else None  # type: ignore[attr-defined]
        if rc:
            if args.all:
                print_summary(timings)
            return rc

    for line in log_file.read_text(errors="replace").splitlines():
        if "Docify invoice batch:" in line or ("session" in line.lower() and "START" in line):
            print("   ", line.strip()[-200:])

    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT source_file, invoice_number, amount, currency, cost_points, attachment FROM docify_invoices "
            "ORDER BY source_file"
        ).fetchall()
    attachments = sorted(p for p in (results / "attachments").rglob("*") if p.is_file())
    print(f"\n==> {len(rows)} invoice(s) extracted into table docify_invoices in {db_path}")
    for row in rows:
        print(f"    {row[0]}: {row[1]} {row[2]} {row[3]} ({row[4]} points) -> {row[5]}")
    print(f"==> {len(attachments)} attachment(s) under {results / 'attachments'}")
    if runs is not None:
        print(f"==> Emulator billed {runs} run(s) for {len(rows)} document(s)")
    print(f"==> Airflow log of the run: {log_file}")
    if args.all:
        print_summary(timings)
    if not rows or len(attachments) < len(rows):
        print("FAILED: expected one row and at least one attachment per document")
        return 1
    if args.all and (len(rows) != len(list(input_dir.iterdir())) or (runs is not None and runs != len(rows))):
        print("FAILED: expected one row and one billed run per document")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
