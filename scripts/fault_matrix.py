"""Render the fault matrices of ``tests/docify/test_fault_matrix.py``, ``tests/dify/test_dify_fault_matrix.py`` and
``tests/dify_openapi/test_dify_openapi_fault_matrix.py``.

All go into ``docs/fault-matrix.md``: Docify's first, then the "Dify" section, then "Dify account API".

Each table lives in its test module, where every cell is proven against the emulator; this script
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
"n/a" is a test in `tests/docify/test_fault_matrix.py`, run against the bundled emulator over a real
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
  `docify_provider.docify.errors`). What happens next, on every Airflow line (an error a retry
  cannot fix leaves the run operators as `AirflowFailException` raised from it, which Airflow never
  retries) and with `retry_policy=DocifyRetryPolicy()` (Airflow 3.3+) where it says so:
  - `DocifyAuthenticationError` (401/403), `DocifyNotFoundError` (404), `DocifyFileError`: fail at
    once, a retry cannot fix them.
  - `DocifyRateLimitedError` (429): with the policy, retried after the server's `Retry-After`
    (without it, the task's own `retries` decide); nothing was started.
    Its subclass `DocifyRunNotStartedError` (the 429 answered a run request) is what the hook and
    a trigger built without `max_wait_not_started` (as here) raise; the run operators first wait
    and send the run again within the try (`Retry-After`, else backoff; bounded by
    `max_wait_not_started`, default 600 s, and `execution_timeout`) and fail with it only past that.
    The same holds for `DifyRunNotStartedError` and `DifyOpenAPIRunNotStartedError` below.
  - `DocifyOutcomeUnknownError`, and its subclasses `DocifyStreamIncompleteError` (stream ended
    without COMPLETE), `DocifyRunTimeoutError` (stream idle past `idle_timeout`) and
    `DocifyRunGatewayError` (HTTP 500/502/504 to a run request, which a gateway can send after
    the run began): the run request went out and no final answer came back, so the run may have
    been started and billed.
    It is never re-sent automatically: the task fails at once, without its retries (a retry would
    find the operator's pending marker and fail the same way). Look the session up in Docify's
    console, then set `allow_resubmit=True` (or clear the task state) to pay for a new run.
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
there, before any run request is sent. Within the connection's `info_cache_seconds` (default 60) a
task may check against the copy an earlier task of the same key and base URL read instead; a key
revoked in that window is refused at the run request (401, nothing started), and inputs the copy
refuses make the task read the scenario again before deciding.
"""

DIFY_INTRO = """\
## Dify

The same for the Dify backend (Workflow Service API). Every cell that is not "n/a" is a test in
`tests/dify/test_dify_fault_matrix.py`, against the bundled Dify emulator over a real socket (its
default `server_profile="current"`: as the newest Dify server behaves, not only its documents): through
`DifyHook` on a worker (`get_app_info`, `get_parameters`, `upload_file`, `run_workflow`,
`stream_workflow`, `download_file`, `stop_task` on a running run), or through
`DifyWorkflowTrigger` in the triggerer's event loop for deferrable streaming (its error event
turned back into the exception by `docify_provider.events.error_from_event`). On Dify a run
executes on the server independently of the connection that started it, and the API can look a
run up (run detail, events, logs), so most lost answers are not lost:

- **recovered (re-attached)**: the stream broke, ended or went silent after `workflow_started`
  named the run; the client read the run detail and re-attached to its events
  (`GET /workflow/{id}/events`, or polling), and the iteration ended with the run's own
  `workflow_finished`. One run, never a second one.
- **recovered (found in the logs)**: a blocking run's answer was lost after the run started (a
  cut connection, a gateway's 524); the client found the run in `GET /workflows/logs` (same end
  user, created since the request, inputs confirmed against the run detail) and waited for it.
  Across tries the same holds: a try that finds an earlier try's run request pending with no run
  id (a deferred stream whose trigger's marker Airflow purged) finds the one run of that end user
  created since in the logs and re-attaches to it; two or none fail closed (`docs/design.md`).
- **recovered (retried)**: a request that is safe to repeat (info, parameters, upload, download)
  was repeated on a dropped connection, 429 or 502/503/504/524 (not 500), after backoff.
- **an error class**: the task fails with this `DifyError` subclass (from
  `docify_provider.dify.errors`), with the same decisions as Docify's classes above.
  `DifyOutcomeUnknownError` on a blocking run means the answer was lost *and* no single matching
  run showed up in the logs within `recovery_timeout` (connection extra; here 1.5 s), so the run
  is not re-sent; on a stream it means the connection broke before any event named the run.
  Either way a run operator's pending record names the end user and the time, so its next try
  looks the run up in the logs again and the error goes to the task's retries; a try whose own
  look across tries found none or several fails at once.
  `DifyRunFailedError` carries Dify's error text (`error`) and the run as Dify reported it. The
  newest Dify answers a blocking run that failed on its model provider with HTTP 400 or 429 and
  the provider's code: the run had started, so a 429 `rate_limit_error` is `DifyRunFailedError`
  (the task's `retries` decide), never the "429, nothing started" that a retry policy re-sends.
- **N runs**: how many runs the emulator started (= billed) for the key. Never 2.

On a worker the run paths read `GET /parameters` (free) and check every input before uploading
or sending, so a rejected key or a wrong base URL stops there, before any run request is sent
(0 requests to the run endpoint). The deferred column gets inputs already checked on the worker.
"""

DIFY_ENDPOINTS_NOTE = (
    "`ep` is the path's endpoint (`info`, `parameters`, `upload`, `run`, `stream`, `download`); see",
    "`docify_provider/testing/faults.py` and `docify_provider/testing/dify/` for every fault kind.",
)

OPENAPI_INTRO = """\
## Dify account API

The same for the Dify account API (user-scoped OpenAPI, account token, `DifyOpenAPIHook` /
`DifyRunAppOperator`). Every cell that is not "n/a" is a test in
`tests/dify_openapi/test_dify_openapi_fault_matrix.py`, against the bundled account-API emulator over a real
socket, through `DifyOpenAPIHook` on a worker: `list_apps`, `describe_app`, `run_app` (always a
stream), `task_events` (re-attach to a run by id), `get_form`, `submit_form`, `stop_task`, and the
device login's token poll (`client.poll_device_token`). What differs from the Service API:

- **No run lookup.** This API has no run-detail or log endpoint, so a run request whose answer was
  lost before any event named the run (a dropped connection, a gateway's 5xx) is
  `DifyOpenAPIOutcomeUnknownError` / `DifyOpenAPIRunGatewayError`, never re-sent: look in the Dify
  console. A run's stream cut *after* `workflow_started` is **recovered (re-attached)** through
  `GET /apps/{id}/tasks/{run_id}/events` with the state snapshot (events counted once).
- **`task_events` reports a cut.** A re-attach stream that breaks or ends before the run's final
  event raises `DifyOpenAPIStreamIncompleteError` (the run may still be going); opening it is a
  read, so 429 and 502/503/504/524 are retried with backoff.
- **Not every POST is a run.** A form answer and a device-token poll are not repeatable either: a
  lost answer says what may have happened (the form answered, the token handed out) instead of
  "billed". A 429 to a device poll is RFC 8628's `slow_down` (the poll waits 5 s longer); a
  502/503/504/524 is no RFC 8628 answer, so the poll simply polls again at its interval.
- **N runs** counts runs started during the call; the re-attach, form and stop paths follow a run
  started before the fault was injected, so they start none.
- **The current server, not its documents.** The emulator answers as the newest Dify server does
  (`server_profile="current"`, Part C of the server-behaviour reference), and the last rows are
  where it differs: a run whose inputs its worker rejects (HTTP 200, then an `error` frame with no
  ids, the body held open; the same `rejected_input` fault as on the Service API, and as there no
  run is started) ends at that frame, once; an expired session's 401 `token_expired` carries Dify's
  hint and points to `airflow-dify login`; the client ends a `continue_on_pause` re-attach at
  `workflow_finished` and never takes a finished run's `task_id` (its run id) for its task;
  `list_apps(tag=)` refuses a server whose rows carry no tags (use `select_apps`); an unknown `mode`
  is named before anything is sent.

App-scoped calls read the app first (`GET /_version`, then `GET /apps/{id}`, free), so a token
Dify does not know (401) or a wrong base URL (404) stops there: 0 requests to the path's own
endpoint.
"""

OPENAPI_ENDPOINTS_NOTE = (
    "`ep` is the path's endpoint (`apps`, `describe`, `stream`, `events`, `form`, `form_submit`, `stop`,",
    "`device`); see `docify_provider/testing/faults.py` and `docify_provider/testing/dify_openapi/`.",
)

OUTRO = """\
Regenerate after changing a table in `tests/docify/test_fault_matrix.py`, `tests/dify/test_dify_fault_matrix.py` or
`tests/dify_openapi/test_dify_openapi_fault_matrix.py`:

```bash
.venv/bin/python scripts/fault_matrix.py
```

`test_doc_is_up_to_date` (in each of those test files) fails while this file differs from the tables.
"""


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def cell_text(cell: Any) -> str:
    """One cell: "recovered (retried), 0 runs", "DocifyServerError, 0 runs" or "n/a: reason"."""
    if cell.na is not None:
        return f"n/a: {cell.na}"
    if cell.expected is None and getattr(cell, "recovery", None):
        outcome = f"recovered ({cell.recovery})"
    elif cell.expected is None:
        outcome = "recovered (retried)" if cell.requests > 1 else "recovered"
    else:
        outcome = f"`{cell.expected.__name__}`"
    return f"{outcome}, {_runs(cell.runs)}"


def matrix_lines(
    cells: Sequence[Any], paths: Mapping[str, tuple[str, str]], faults: Mapping[str, Any], *, level: str = "##"
) -> list[str]:
    """The table of ``cells`` (rows: faults, columns: paths) under a ``level`` heading."""
    by_pair = {(c.path, c.fault): c for c in cells}
    lines = [f"{level} Matrix", ""]
    lines.append("| Fault | " + " | ".join(title for title, _ in paths.values()) + " |")
    lines.append("|---" * (len(paths) + 1) + "|")
    for fault_id, spec in faults.items():
        row = [cell_text(by_pair[(path_id, fault_id)]) for path_id in paths]
        lines.append(f"| {spec.title} | " + " | ".join(row) + " |")
    return lines


def injection_lines(faults: Mapping[str, Any], endpoints_note: Sequence[str], *, level: str = "##") -> list[str]:
    """How each fault row is injected, after ``endpoints_note`` (what ``ep`` stands for)."""
    lines = ["", f"{level} How each fault is injected", "", *endpoints_note]
    lines += ["", "| Fault | Injection |", "|---|---|"]
    lines += [f"| {spec.title} | {spec.how} |" for spec in faults.values()]
    return lines


DOCIFY_ENDPOINTS_NOTE = (
    "`ep` is the path's endpoint (`info`, `upload`, `run`, `stream`, `download`); see",
    "`docify_provider/testing/faults.py` for every fault kind.",
)


def render(
    cells: Sequence[Any],
    paths: Mapping[str, tuple[str, str]],
    faults: Mapping[str, Any],
    dify: tuple[Sequence[Any], Mapping[str, tuple[str, str]], Mapping[str, Any]] | None = None,
    openapi: tuple[Sequence[Any], Mapping[str, tuple[str, str]], Mapping[str, Any]] | None = None,
) -> str:
    """The whole document: the Docify matrix ``cells``, then (when given) the Dify and account-API ones."""
    lines = [INTRO, *matrix_lines(cells, paths, faults), *injection_lines(faults, DOCIFY_ENDPOINTS_NOTE)]
    for section, intro, note in (
        (dify, DIFY_INTRO, DIFY_ENDPOINTS_NOTE),
        (openapi, OPENAPI_INTRO, OPENAPI_ENDPOINTS_NOTE),
    ):
        if section is not None:
            more_cells, more_paths, more_faults = section
            lines += ["", intro, *matrix_lines(more_cells, more_paths, more_faults, level="###")]
            lines += injection_lines(more_faults, note, level="###")
    lines += ["", OUTRO]
    return "\n".join(lines)


#: Where each backend's matrix lives: ``tests/<folder>/<module>.py`` (the folders mirror the source).
MATRICES = {
    "docify": ("docify", "test_fault_matrix"),
    "dify": ("dify", "test_dify_fault_matrix"),
    "dify_openapi": ("dify_openapi", "test_dify_openapi_fault_matrix"),
}


def matrix_module(backend: str) -> Any:
    """The test module holding ``backend``'s matrix (``CELLS``, ``PATHS``, ``FAULTS``), imported as
    pytest imports it (by its name, its folder and ``tests/`` on the path), so that both share one copy."""
    import importlib

    folder, name = MATRICES[backend]
    for path in (REPO, REPO / "tests", REPO / "tests" / folder):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return importlib.import_module(name)


def render_document() -> str:
    """The document for the tables as they are now in ``tests/``."""
    docify, dify, openapi = (matrix_module(backend) for backend in MATRICES)
    return render(
        docify.CELLS,
        docify.PATHS,
        docify.FAULTS,
        dify=(dify.CELLS, dify.PATHS, dify.FAULTS),
        openapi=(openapi.CELLS, openapi.PATHS, openapi.FAULTS),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/fault-matrix.md is out of date")
    args = parser.parse_args(argv)
    text = render_document()
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
