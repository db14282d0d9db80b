"""The main job: run the invoice pipeline end to end on a fresh machine, then say where results landed.

By default it starts the bundled Docify emulator and makes a few sample invoices. With
``DOCIFY_API_KEY`` set (and optionally ``DOCIFY_BASE_URL`` and ``DOCIFY_INPUT_DIR``) it runs against
real Docify instead. Everything goes under ``out/`` (a throwaway ``AIRFLOW_HOME`` with SQLite, the
results database and the attachments); each run starts from a clean ``out/``.
"""

from __future__ import annotations

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
OUT = ROOT / "out"
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


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    home, inbox, results = OUT / "airflow-home", OUT / "inbox", OUT / "results"
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
        conf = json.dumps({"input_dir": str(input_dir), "output_dir": str(results)})
        log_file = OUT / "dag-test.log"
        with open(log_file, "w") as log:
            proc = subprocess.run(
                [str(BIN / "airflow"), "dags", "test", "example_docify_invoices", "-c", conf],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        runs = emulator.runs_started() if emulator else None  # type: ignore[attr-defined]

    lines = log_file.read_text(errors="replace").splitlines()
    for line in lines:
        if "Docify invoice batch:" in line or ("session" in line.lower() and "START" in line):
            print("   ", line.strip()[-200:])
    if proc.returncode != 0:
        print("\n".join(lines[-60:]))
        print(f"FAILED: airflow dags test exited {proc.returncode}; full log: {log_file}")
        return proc.returncode

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
