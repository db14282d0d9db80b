"""The main job: run the invoice pipeline end to end on a fresh machine, then say where results landed.

By default it starts the bundled Docify emulator and makes a few sample invoices. With
``DOCIFY_API_KEY`` set (and optionally ``DOCIFY_BASE_URL`` and ``DOCIFY_INPUT_DIR``) it runs against
real Docify instead. Everything goes under ``out/`` (a throwaway ``AIRFLOW_HOME`` with SQLite, the
results database and the attachments); each run starts from a clean ``out/``.

``--all`` also runs the summary pipeline and the Dify document pipeline (on the bundled Dify
emulator) and fails unless every pipeline did what it promises;
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
from collections.abc import Iterator
from pathlib import Path

from docify_provider.testing.samples import make_sample_invoices

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


def dags_test(dag_id: str, conf: dict[str, str], env: dict[str, str], log_file: Path) -> int:
    """``airflow dags test`` of one example pipeline, its output kept in ``log_file``."""
    with open(log_file, "w") as log:
        proc = subprocess.run(
            [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        print("\n".join(log_file.read_text(errors="replace").splitlines()[-60:]))
        print(f"FAILED: airflow dags test {dag_id} exited {proc.returncode}; full log: {log_file}")
    return proc.returncode


def run_summary(env: dict[str, str], out: Path, emulator: object | None) -> int:
    """The summary pipeline; its published line must come from the scenario's json_result."""
    from docify_provider.testing import SUMMARY_KEY

    if emulator is None:
        print("==> example_docify_summary needs the emulator's summary scenario; skipped on real Docify")
        return 0
    env = {
        **env,
        "AIRFLOW_CONN_DOCIFY_SUMMARY": json.dumps(
            {"conn_type": "docify", "host": emulator.base_url, "password": SUMMARY_KEY}  # type: ignore[attr-defined]
        ),
    }
    log_file = out / "dag-test-summary.log"
    print("==> Running example_docify_summary on the bundled Docify emulator")
    conf = {"text": "Airflow runs Docify. It works.", "language": "fr"}
    if rc := dags_test("example_docify_summary", conf, env, log_file):
        return rc
    want = "[fr] Airflow runs Docify. (5 words)"
    runs = emulator.runs_started(SUMMARY_KEY)  # type: ignore[attr-defined]
    found = want in log_file.read_text(errors="replace")
    print(f"==> Summary published {want!r}: {'yes' if found else 'NO'}; emulator billed {runs} run(s)")
    if not found or runs != 1:
        print(f"FAILED: expected the published summary once and 1 run billed; full log: {log_file}")
        return 1
    return 0


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
            "AIRFLOW_CONN_DIFY_DOCUMENTS": json.dumps(
                {"conn_type": "dify", "host": emulator.base_url, "password": DOCUMENT_APP_KEY}
            ),
            "AIRFLOW_CONN_DIFY_RESULTS_DB": json.dumps({"conn_type": "sqlite", "host": str(db_path)}),
        }
        print("==> Running example_dify_documents on the bundled Dify emulator")
        conf = {"input_dir": str(inbox), "output_dir": str(results)}
        if rc := dags_test("example_dify_documents", conf, env, log_file):
            return rc
        runs = emulator.runs_started(key=DOCUMENT_APP_KEY)
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT workflow_run_id, status, attachment FROM dify_documents").fetchall()
    files = [p for p in (results / "attachments").rglob("*") if p.is_file()]
    print(f"==> Dify: {len(rows)} row(s) in table dify_documents, {len(files)} output file(s), {runs} run(s) billed")
    if len(rows) != 3 or len(files) != 3 or runs != 3 or any(r[1] != "succeeded" for r in rows):
        print(f"FAILED: expected 3 succeeded rows, 3 output files and 3 runs billed; full log: {log_file}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="working folder (emptied first)")
    parser.add_argument("--all", action="store_true", help="also run the summary pipeline; check both strictly")
    args = parser.parse_args(argv)
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
            "AIRFLOW_CONN_DOCIFY_INVOICES": json.dumps({"conn_type": "docify", "host": base_url, "password": key}),
            "AIRFLOW_CONN_DOCIFY_RESULTS_DB": json.dumps({"conn_type": "sqlite", "host": str(db_path)}),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        conf = {"input_dir": str(input_dir), "output_dir": str(results)}
        log_file = out / "dag-test.log"
        rc = dags_test("example_docify_invoices", conf, env, log_file)
        runs = emulator.runs_started(key) if emulator else None  # type: ignore[attr-defined]
        if rc == 0 and args.all:
            rc = run_summary(env, out, emulator)
        if rc == 0 and args.all:
            rc = run_dify_documents(env, out)
        if rc:
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
    if not rows or len(attachments) < len(rows):
        print("FAILED: expected one row and at least one attachment per document")
        return 1
    if args.all and (len(rows) != len(list(input_dir.iterdir())) or (runs is not None and runs != len(rows))):
        print("FAILED: expected one row and one billed run per document")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
