"""The fault matrix of every backend obeys the same rules, and the document shows it as it is.

Each backend's table lives in its test module (``tests/docify/test_fault_matrix.py``,
``tests/dify/test_dify_fault_matrix.py``, ``tests/dify_openapi/test_dify_openapi_fault_matrix.py``),
where every cell is a test against the emulator; ``scripts/fault_matrix.py`` renders them into
``docs/fault-matrix.md``. These tests check the tables themselves (no emulator, no Airflow).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import fault_matrix_table as table

from scripts.fault_matrix import DOC, REPO, matrix_lines, matrix_module, render_document


def _matrix(contract: Any) -> Any:
    return matrix_module(contract.name)


def test_table_covers_every_path_and_fault_once(contract: Any) -> None:
    matrix = _matrix(contract)
    table.check_table(matrix.CELLS, matrix.PATHS, matrix.FAULTS)


def test_no_fault_makes_the_provider_pay_twice(contract: Any) -> None:
    """A cell bills at most one run: no fault, on any path, makes the provider send a run again."""
    twice = [cell.id for cell in _matrix(contract).CELLS if cell.runs > 1]
    assert twice == []


def test_every_expected_error_is_one_of_the_backends_own(contract: Any) -> None:
    """What a DAG author catches is the backend's error root (a subclass of it), never a bare library error."""
    root = contract.error_class()
    foreign = [(c.id, c.expected) for c in _matrix(contract).CELLS if c.expected and not issubclass(c.expected, root)]
    assert foreign == []


def test_every_cell_that_is_not_na_is_a_test(contract: Any) -> None:
    """The table's cells and the module's parametrized ``test_fault`` cases are the same set."""
    matrix = _matrix(contract)
    assert [c.id for c in matrix.TESTED] == [c.id for c in matrix.CELLS if c.na is None]
    assert len(matrix.TESTED) == len({c.id for c in matrix.TESTED}), "two cells share a test id"


def test_document_shows_the_table_as_it_is(contract: Any) -> None:
    matrix = _matrix(contract)
    level = "##" if contract.name == "docify" else "###"
    text = DOC.read_text(encoding="utf-8")
    missing = [
        line for line in matrix_lines(matrix.CELLS, matrix.PATHS, matrix.FAULTS, level=level) if line not in text
    ]
    assert missing == [], "docs/fault-matrix.md is out of date: run .venv/bin/python scripts/fault_matrix.py"


def test_doc_is_up_to_date() -> None:
    assert render_document() == DOC.read_text(encoding="utf-8"), (
        "docs/fault-matrix.md is out of date: run .venv/bin/python scripts/fault_matrix.py"
    )


def test_the_check_script_passes_on_its_own() -> None:
    """``scripts/fault_matrix.py --check`` as a person runs it: its own interpreter, the tables found
    by path (not through modules a pytest run has already imported)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fault_matrix.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is up to date" in done.stdout
