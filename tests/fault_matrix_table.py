"""The table machinery of the fault matrices (Docify: ``test_fault_matrix.py``, Dify: ``test_dify_fault_matrix.py``,
the Dify account API: ``test_dify_openapi_fault_matrix.py``).

A matrix is three tables: ``PATHS`` (path id -> column title and the emulator endpoint its faults
go to), ``FAULTS`` (fault id -> ``FaultSpec``: row title, the usual injection, how it is made) and
``CELLS`` (one ``Cell`` per path x fault: the outcome a DAG author gets and the runs the emulator
started). ``scripts/fault_matrix.py`` renders every matrix into ``docs/fault-matrix.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from docify_provider._core.errors import ProviderError
from docify_provider.testing.faults import Fault
from helpers import settled

#: Short enough that the stall cases take a second; long enough that a healthy stream (an event
#: every few ms, pings every 0.1 s) never trips it on a busy machine.
IDLE_TIMEOUT = 1.0
#: Retry settings that keep every retried case in milliseconds (``Retry-After`` 1 s is cut to 0.2 s).
FAST_RETRIES: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 0.2}

#: Expected outcome: None means recovered (the call returned its normal result).
Expected = type[ProviderError] | None


@dataclass(frozen=True)
class Inject:
    """How a fault is produced for one cell; every field is optional.

    ``kind``/``params`` make an emulator ``Fault`` (once) on the path's endpoint, or on
    ``endpoint`` when set (e.g. Dify's re-attach ``events``); the other fields change what the
    client presents: another key, a wrong base URL, a bad file, an expired link.
    """

    kind: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    base_url_suffix: str = ""
    file: str | None = None  # "oversize" | "unsupported"
    download_requires_auth: bool = False
    download_token: str | None = None
    endpoint: str | None = None

    def fault(self, endpoint: str) -> Fault | None:
        return None if self.kind is None else Fault(self.endpoint or endpoint, self.kind, **self.params)


@dataclass(frozen=True)
class FaultSpec:
    """A row of the rendered matrix: its title, the usual injection and how it is described."""

    title: str
    inject: Inject
    how: str


@dataclass(frozen=True)
class Cell:
    """One path under one fault: the injection, the outcome, and what the emulator saw.

    ``requests`` is how many requests reached the path's own endpoint (2 = retried once; 0 = the
    provider stopped before sending, e.g. the hook's own check failed first). ``runs`` is how
    many runs the emulator started (= billed) during the call. ``recovery`` says how a recovered
    cell got its result back when it was not a plain answer (e.g. "re-attached"); the test of the
    cell checks it. ``na`` marks a cell that cannot apply, with the reason; it is rendered, not tested.
    """

    path: str
    fault: str
    expected: Expected = None
    runs: int = 0
    requests: int = 1
    inject: Inject | None = None
    na: str | None = None
    recovery: str | None = None

    def injection(self, faults: Mapping[str, FaultSpec]) -> Inject:
        """The cell's own injection, else its fault row's usual one."""
        return self.inject or faults[self.fault].inject

    @property
    def id(self) -> str:
        return f"{self.path}-{self.fault}"


def na(path: str, fault: str, reason: str) -> Cell:
    return Cell(path, fault, na=reason)


#: A cell template (``ok`` / ``fails``, path and fault filled in by ``cells_for``), or why it is n/a.
Spec = Cell | str


def ok(runs: int = 0, *, requests: int = 1, recovery: str | None = None) -> Cell:
    """A recovered cell template: the normal result, ``runs`` started, ``requests`` to the path's endpoint."""
    return Cell("", "", None, runs, requests, recovery=recovery)


def fails(expected: type[ProviderError], runs: int = 0, *, requests: int = 1, inject: Inject | None = None) -> Cell:
    """A cell template that raises ``expected``."""
    return Cell("", "", expected, runs, requests, inject)


def cells_for(fault: str, paths: Iterable[str], spec_of: Callable[[str], Spec | None]) -> list[Cell]:
    """One fault's row, in ``paths`` order: ``spec_of(path)`` made into that path's cell.

    How a matrix groups its paths (every run path alike, every read alike, ...) is its
    ``spec_of``; a path it leaves without a spec is a table error.
    """
    cells = []
    for path in paths:
        spec = spec_of(path)
        assert spec is not None, f"{fault}: no cell for {path}"
        cells.append(
            na(path, fault, spec) if isinstance(spec, str) else dataclasses.replace(spec, path=path, fault=fault)
        )
    return cells


def fault(title: str, kind: str, ep: str = "ep", note: str = "", **params: Any) -> FaultSpec:
    """A row injected as ``Fault(ep, kind, **params)`` once, described by that call and ``note``."""
    args = "".join(f", {k}={json.dumps(v) if isinstance(v, str) else repr(v)}" for k, v in params.items())
    how = f'`Fault({ep}, "{kind}"{args})`' + (f": {note}" if note else "")
    return FaultSpec(title, Inject(kind, params), how)


def status(code: int, title: str | None = None, note: str = "once") -> FaultSpec:
    """A row answering HTTP ``code`` once."""
    return fault(title or str(code), "status", note=note, status=code)


#: The rate-limit and server-error rows of both Dify matrices (same rows, same order).
DIFY_SERVER_STATUS_ROWS: dict[str, FaultSpec] = {
    "429": status(429, "429 without Retry-After"),
    **{str(code): status(code) for code in (500, 502, 503, 504, 524)},
}


def index_columns(
    columns: Sequence[tuple[str, str, str, str]],
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """``(path id, title, endpoint, request path tail)`` columns as PATHS (id -> title, endpoint)
    and TAILS (id -> tail: a request to a wrong base URL is matched by it)."""
    return (
        {path: (title, endpoint) for path, title, endpoint, _ in columns},
        {path: tail for path, _, _, tail in columns},
    )


# Rows both matrices have, injected the same way.
LATENCY = FaultSpec(
    "Latency (0.2 s before answering)",
    Inject("latency", {"seconds": 0.2}),
    '`Fault(ep, "latency", seconds=0.2)`',
)
MALFORMED_EVENT = FaultSpec(
    "Malformed event (data not JSON)", Inject("malformed_event"), '`Fault("stream", "malformed_event")`'
)
STALL = FaultSpec(
    f"Stream idle past idle_timeout ({IDLE_TIMEOUT:g} s)",
    Inject("stall", {"after_events": 2, "seconds": 3}),
    '`Fault("stream", "stall", after_events=2, seconds=3)`: no bytes at all, not even pings',
)


def fast_hook(hook_class: type[Any], conn_id: str) -> Any:
    """The hook a task would use for ``conn_id``, with the backoff shortened (``FAST_RETRIES``)."""
    hook = hook_class(conn_id)
    # Backoff is not a connection extra; shorten it the way a DAG's own tests would.
    hook.config = dataclasses.replace(hook.config, **FAST_RETRIES)
    return hook


def cells_to_test(cells: Sequence[Cell]) -> list[Cell]:
    """The cells that are tests (not n/a)."""
    return [cell for cell in cells if cell.na is None]


def check_table(cells: Sequence[Cell], paths: Mapping[str, Any], faults: Mapping[str, Any]) -> None:
    """Every path x fault pair has exactly one cell; an n/a cell claims nothing else."""
    pairs = [(c.path, c.fault) for c in cells]
    assert len(pairs) == len(set(pairs)), "a cell is listed twice"
    assert set(pairs) == {(p, f) for p in paths for f in faults}, "a cell is missing"
    for cell in cells:
        if cell.na is not None:
            assert cell.expected is None and cell.inject is None
        if cell.recovery is not None:
            assert cell.expected is None, "only a recovered cell says how it recovered"


# --- driving one cell -------------------------------------------------------------------------


async def first_event(trigger: Any) -> Any:
    """The first event of a trigger's ``run()``, the generator closed afterwards."""
    gen = trigger.run()
    try:
        return await anext(gen)
    finally:
        await gen.aclose()


def run_trigger(trigger: Any) -> Any:
    """``trigger.run()`` on a new event loop, as the triggerer runs it: its first event."""
    return asyncio.run(first_event(trigger))


def _requests(emu: Any, endpoint: str, tail: str) -> list[Any]:
    return [r for r in emu.requests if r.endpoint == endpoint or (r.endpoint is None and r.path.endswith(tail))]


def requests_to(emu: Any, endpoint: str, tail: str) -> int:
    """Requests that reached ``endpoint``, including ones sent under a wrong base URL (404), by path ``tail``."""
    return len(_requests(emu, endpoint, tail))


def settled_requests(emu: Any, endpoint: str, tail: str, expected: int) -> int:
    """``requests_to`` once ``expected`` requests are recorded (or after 2 s): see ``helpers.settled``."""
    return len(settled(lambda: _requests(emu, endpoint, tail), expected, timeout=2))


def drive_cell(
    cell: Cell,
    inject: Inject,
    *,
    emulator: Any,
    endpoint: str,
    tail: str,
    key: str,
    root: type[ProviderError],
    call: Callable[[], None],
    check_error: Callable[[ProviderError], None],
) -> None:
    """Inject the cell's fault, make the call, and check the outcome, the fault's use and the counters.

    ``endpoint`` is the path's emulator endpoint (whose requests are counted; ``tail`` is its
    request path), ``key`` the key whose runs are counted, ``root`` the backend's error root.
    """
    runs_before, key_runs_before = emulator.runs_started(), emulator.runs_started(key)
    requests_before = requests_to(emulator, endpoint, tail)
    fault = inject.fault(endpoint)
    if fault is not None:
        emulator.inject(fault)

    if cell.expected is None:
        call()
    else:
        with pytest.raises(root) as caught:
            call()
        assert type(caught.value) is cell.expected, f"{type(caught.value).__name__}: {caught.value}"
        check_error(caught.value)

    if fault is not None:
        assert fault.hits == 1, "the fault was never applied: this cell tested nothing"
    assert emulator.runs_started() - runs_before == cell.runs, "runs started (billed)"
    assert emulator.runs_started(key) - key_runs_before == cell.runs, "runs started for the key"
    settled = settled_requests(emulator, endpoint, tail, requests_before + cell.requests)
    assert settled - requests_before == cell.requests, "requests to the path's endpoint"
