"""Render the fault matrix of ``tests/test_fault_matrix.py`` into ``docs/fault-matrix.md``.

The table lives in the test module, where every cell is proven against the emulator; this script
only turns it into Markdown, so the document cannot claim what the tests do not check
(``test_doc_is_up_to_date`` fails when it was not regenerated).

    .venv/bin/python scripts/fault_matrix.py          # rewrite docs/fault-matrix.md
    .venv/bin/python scripts/fault_matrix.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "fault-matrix.md"

INTRO = """\
# Fault matrix

What a DAG gets when Docify or the network misbehaves, path by path. Every cell that is not
"n/a" is a test in `tests/test_fault_matrix.py`, run against the bundled emulator over a real
socket: the call goes through `DocifyHook` on a worker, or through `DocifyStreamTrigger` in the
triggerer's event loop for deferrable streaming (where the trigger's error event is turned back
into the same exception the task raises).

How to read a cell:

- **recovered**: the call returned its normal result; the task succeeds. **(retried)** means the
  provider repeated a request that is safe to repeat (scenario info, upload, download) by itself,
  on a dropped connection, 429 or 502/503/504 (not 500), after exponential backoff or the
  server's `Retry-After` (capped at 120 s); `max_retries` (connection extra, default 4) bounds it.
  Run requests are never repeated once they may have reached Docify.
- **an error class**: the task fails with this `DocifyError` subclass (from
  `docify_provider.client.errors`). What happens next, with `retry_policy=DocifyRetryPolicy()`
  (Airflow 3.3+):
  - `DocifyAuthenticationError` (401/403), `DocifyNotFoundError` (404), `DocifyFileError`: fail at
    once, a retry cannot fix them.
  - `DocifyRateLimitedError` (429): retried after the server's `Retry-After`; nothing was started.
  - `DocifyOutcomeUnknownError`, and its subclasses `DocifyStreamIncompleteError` (stream ended
    without COMPLETE), `DocifyRunTimeoutError` (stream idle past `idle_timeout`) and
    `DocifyRunGatewayError` (HTTP 500/502/504 to a run request, which a gateway can send after
    the run began): the run request went out and no final answer came back, so the run may have
    been started and billed.
    It is never re-sent automatically: the policy fails the task at once, and a plain retry finds
    the operator's pending marker and fails the same way. Look the session up in Docify's console,
    then set `allow_resubmit=True` (or clear the task state) to pay for a new run.
  - `DocifyRunFailedError` (ERROR event, or `isSuccess` false): the run happened, was billed and
    failed; the server's result is on the exception. The task's own `retries` decide whether to
    buy another run.
  - `DocifyServerError` (503 to a run request; any 5xx elsewhere): Docify turned the request
    away, so no run was started; the task's own `retries` decide, and a retry sends the run again.
- **N runs**: how many runs the emulator started (= billed) for the key during the call. It is
  never 2: no fault makes the provider pay twice.
- **n/a**: the fault cannot happen on that path, for the reason given.

On a worker, the run paths read the scenario (`GET /v1/scenario/info`, free) and check every
input and file before uploading or paying, so a rejected key, a wrong base URL or a bad file stops
there, before any run request is sent.
"""

OUTRO = """\
Regenerate after changing the table in `tests/test_fault_matrix.py`:

```bash
.venv/bin/python scripts/fault_matrix.py
```

`tests/test_fault_matrix.py::test_doc_is_up_to_date` fails while this file differs from the table.
"""


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def cell_text(cell: Any) -> str:
    """One cell: "recovered (retried), 0 runs", "DocifyServerError, 0 runs" or "n/a: reason"."""
    if cell.na is not None:
        return f"n/a: {cell.na}"
    if cell.expected is None:
        outcome = "recovered (retried)" if cell.requests > 1 else "recovered"
    else:
        outcome = f"`{cell.expected.__name__}`"
    return f"{outcome}, {_runs(cell.runs)}"


def render(cells: Sequence[Any], paths: Mapping[str, tuple[str, str]], faults: Mapping[str, Any]) -> str:
    """The whole document for the table ``cells`` (rows: faults, columns: paths)."""
    by_pair = {(c.path, c.fault): c for c in cells}
    lines = [INTRO, "## Matrix", ""]
    lines.append("| Fault | " + " | ".join(title for title, _ in paths.values()) + " |")
    lines.append("|---" * (len(paths) + 1) + "|")
    for fault_id, spec in faults.items():
        row = [cell_text(by_pair[(path_id, fault_id)]) for path_id in paths]
        lines.append(f"| {spec.title} | " + " | ".join(row) + " |")
    lines += ["", "## How each fault is injected", ""]
    lines.append("`ep` is the path's endpoint (`info`, `upload`, `run`, `stream`, `download`); see")
    lines.append("`docify_provider/testing/faults.py` for every fault kind.")
    lines += ["", "| Fault | Injection |", "|---|---|"]
    for spec in faults.values():
        lines.append(f"| {spec.title} | {spec.how} |")
    lines += ["", OUTRO]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/fault-matrix.md is out of date")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.test_fault_matrix import CELLS, FAULTS, PATHS

    text = render(CELLS, PATHS, FAULTS)
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(REPO)} is out of date: run .venv/bin/python scripts/fault_matrix.py")
            return 1
        print(f"{DOC.relative_to(REPO)} is up to date")
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
