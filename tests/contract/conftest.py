"""The three backends as the contract suite drives them: one ``Contract`` each, one ``contract`` fixture.

Every test of ``tests/contract/`` takes ``contract`` (parametrized over Docify, the Dify Service API
and the Dify account API) and holds each backend to the same rule; what differs between the
backends (operator classes, connection, cheap inputs, the run counter, the documented keys) is
data here, not a copy of the test. Nothing is mocked: the runs are ``dag.test()`` runs against the
backend's emulator (``tests/airflow_helpers.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import DOCUMENT_APP_KEY, TEXT_APP_KEY
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, DOCUMENT_APP_ID, TEXT_APP_ID
from docify_provider.testing.keys import INVOICE_KEY, SUMMARY_KEY
from docify_provider.testing.samples import SAMPLE_PNG
from docify_provider.xcom import DIFY_XCOM_KEYS, XCOM_KEYS
from helpers import SUMMARY_INPUTS
from tests.credential_scan import record_raised_by_operators


@dataclass(frozen=True)
class Contract:
    """One backend, as the contract tests run it."""

    name: str
    #: The conftest fixture giving the emulator with the backend's connections defined.
    conn_fixture: str
    #: Ways to run: "blocking" (one request), "streaming" (on the worker), "deferred" (the triggerer).
    modes: tuple[str, ...]
    #: ``task_state_store`` key of the bought-once ledger, and the XCom key of the restart marker.
    state_key: str
    marker_key: str
    #: Keys of the ledger that earlier builds wrote (``(part, key)``), read by a retry that finds none.
    legacy_state_keys: tuple[tuple[str, str], ...]
    #: The server's ids of a run, as the ledger's ``started`` records them.
    run_ids: tuple[str, ...]
    #: The ``return_value`` keys of a run operator (``docify_provider.xcom``; the README documents them).
    xcom_keys: frozenset[str]
    #: ``xcom_keys`` that differ between two runs of the same inputs.
    per_run: frozenset[str]
    #: ``xcom_keys`` a cheap run of the first mode leaves None (not pushed on their own on Airflow 3.0).
    maybe_none: frozenset[str]
    #: The credential of the connections below (it must never show: tests/contract/test_secrets.py).
    credential: str
    #: The root of the backend's errors.
    error_root: str
    #: What a retry logs when it takes the result an earlier try bought.
    reused: str
    #: How a cheap run's and a file-producing run's task is built: ``make(mode, kind, tmp_path, **kwargs)``.
    make: Callable[..., Any]
    #: Runs the emulator started for the credential: ``runs(emu, kind)``.
    runs: Callable[[Any, str], int]
    #: Files the emulator received for a "files" run.
    uploads: Callable[[Any], int]

    def operator(self, mode: str, kind: str = "cheap", tmp_path: Path | None = None, **kwargs: Any) -> Any:
        """A run operator of this backend in ``mode``: ``kind`` "cheap" (a text run) or "files"
        (a run whose result has one file to store under ``attachments_to``)."""
        assert mode in self.modes, f"{self.name} has no {mode} mode"
        return self.make(mode, kind, tmp_path, **kwargs)

    def error_class(self) -> type[BaseException]:
        module, _, name = self.error_root.rpartition(".")
        return getattr(__import__(module, fromlist=[name]), name)  # type: ignore[no-any-return]


def _image(tmp_path: Path | None) -> str:
    assert tmp_path is not None, "a file-producing run needs tmp_path"
    path = tmp_path / "acme_invoice.png"
    path.write_bytes(SAMPLE_PNG)
    return str(path)


def _document(tmp_path: Path | None) -> str:
    assert tmp_path is not None, "a file-producing run needs tmp_path"
    path = tmp_path / "notes.txt"
    path.write_text("quarterly notes")
    return str(path)


def _docify(mode: str, kind: str, tmp_path: Path | None, **kwargs: Any) -> Any:
    from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator

    if kind == "files":
        kwargs = {"docify_conn_id": "docify_invoice", "inputs": {"invoice_image": _image(tmp_path)}, **kwargs}
    else:
        kwargs = {"docify_conn_id": "docify_summary", "inputs": SUMMARY_INPUTS, **kwargs}
    if mode == "blocking":
        return DocifyRunScenarioOperator(**kwargs)
    return DocifyStreamScenarioOperator(deferrable=mode == "deferred", **kwargs)


def _dify(mode: str, kind: str, tmp_path: Path | None, **kwargs: Any) -> Any:
    from docify_provider.operators.dify import DifyRunWorkflowOperator, DifyStreamWorkflowOperator

    if kind == "files":
        kwargs = {"dify_conn_id": "dify_document", "inputs": {"document": _document(tmp_path)}, **kwargs}
    else:
        kwargs = {"dify_conn_id": "dify_text", "inputs": {"topic": "contracts", "tone": "formal"}, **kwargs}
    if mode == "blocking":
        return DifyRunWorkflowOperator(**kwargs)
    return DifyStreamWorkflowOperator(deferrable=mode == "deferred", **kwargs)


def _dify_openapi(mode: str, kind: str, tmp_path: Path | None, **kwargs: Any) -> Any:
    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    if kind == "files":
        kwargs = {"app": DOCUMENT_APP_ID, "inputs": {"document": _document(tmp_path)}, **kwargs}
    else:
        kwargs = {"app": "Text Writer", "inputs": {"topic": "contracts", "tone": "formal"}, **kwargs}
    return DifyRunAppOperator(deferrable=mode == "deferred", **kwargs)


DIFY_XCOM = frozenset(DIFY_XCOM_KEYS)

CONTRACTS = {
    "docify": Contract(
        name="docify",
        conn_fixture="docify_conns",
        modes=("blocking", "streaming", "deferred"),
        state_key="docify_state",
        marker_key="docify_run_request_sent",
        legacy_state_keys=(("result", "docify_result"), ("pending", "docify_pending")),
        run_ids=("session_id",),
        xcom_keys=frozenset(XCOM_KEYS),
        per_run=frozenset(("run_id", "created_at", "finished_at", "elapsed_ms", "session_id")),
        maybe_none=frozenset(("session_id", "result")),
        credential=SUMMARY_KEY,
        error_root="docify_provider.docify.errors.DocifyError",
        reused="no new run was bought",
        make=_docify,
        runs=lambda emu, kind: int(emu.runs_started(INVOICE_KEY if kind == "files" else SUMMARY_KEY)),
        uploads=lambda emu: len(emu.uploads),
    ),
    "dify": Contract(
        name="dify",
        conn_fixture="dify_conns",
        modes=("blocking", "streaming", "deferred"),
        state_key="dify_state",
        marker_key="dify_run_request_sent",
        legacy_state_keys=(),
        run_ids=("task_id", "workflow_run_id"),
        xcom_keys=DIFY_XCOM,
        per_run=frozenset(("workflow_run_id", "task_id", "created_at", "finished_at", "elapsed_time")),
        maybe_none=frozenset(("error",)),
        credential=TEXT_APP_KEY,
        error_root="docify_provider.dify.errors.DifyError",
        reused="no new run was bought",
        make=_dify,
        runs=lambda emu, kind: int(emu.runs_started(key=DOCUMENT_APP_KEY if kind == "files" else TEXT_APP_KEY)),
        uploads=lambda emu: int(emu.upload_count(key=DOCUMENT_APP_KEY)),
    ),
    "dify_openapi": Contract(
        name="dify_openapi",
        conn_fixture="openapi_conn",
        # The account API has no blocking run: every run is a stream, started on the worker.
        modes=("streaming", "deferred"),
        state_key="dify_state",
        marker_key="dify_run_request_sent",
        legacy_state_keys=(),
        run_ids=("task_id", "workflow_run_id"),
        # The Dify workflow XCom plus the app it ran (id and name) and its mode (chat apps add answer, conversation_id).
        xcom_keys=DIFY_XCOM | {"app_id", "app_name", "mode"},
        per_run=frozenset(("workflow_run_id", "task_id", "created_at", "finished_at", "elapsed_time")),
        maybe_none=frozenset(("error",)),
        credential=ACCOUNT_TOKEN,
        error_root="docify_provider.dify_openapi.errors.DifyOpenAPIError",
        reused="no new run was bought",
        make=_dify_openapi,
        runs=lambda emu, kind: int(
            emu.runs_started(ACCOUNT_TOKEN, app=DOCUMENT_APP_ID if kind == "files" else TEXT_APP_ID)
        ),
        uploads=lambda emu: int(emu.upload_count(key=ACCOUNT_TOKEN)),
    ),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test taking ``contract`` runs once per backend (those a ``backends(*names)`` mark names, else
    all three); one taking ``mode`` as well, once per mode each backend has (``backends(modes=...)``
    keeps some)."""
    if "contract" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("backends")
    names = list(mark.args) if mark is not None and mark.args else list(CONTRACTS)
    # airflow_line_for(*backends, reason=...): those backends' cases are airflow_line (older lines too).
    line = metafunc.definition.get_closest_marker("airflow_line_for")

    def marks(name: str) -> Any:
        return [pytest.mark.airflow_line(line.kwargs["reason"])] if line and name in line.args else []

    if "mode" not in metafunc.fixturenames:
        metafunc.parametrize("contract", [pytest.param(n, id=n, marks=marks(n)) for n in names], indirect=True)
        return
    keep = mark.kwargs.get("modes") if mark is not None else None
    pairs = [(n, m) for n in names for m in CONTRACTS[n].modes if keep is None or m in keep]
    params = [pytest.param(n, m, id=f"{n}-{m}", marks=marks(n)) for n, m in pairs]
    metafunc.parametrize(("contract", "mode"), params, indirect=["contract"])


@pytest.fixture
def contract(request: pytest.FixtureRequest) -> Contract:
    """The backend the test holds to the contract (see ``pytest_generate_tests``)."""
    return CONTRACTS[request.param]


@pytest.fixture
def backend_emu(contract: Contract, request: pytest.FixtureRequest) -> Any:
    """The contract backend's emulator, its connections defined (``docify_conns`` / ``dify_conns`` /
    ``openapi_conn``) and Airflow's metadata DB ready."""
    return request.getfixturevalue(contract.conn_fixture)


@pytest.fixture
def capture_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every exception a provider operator or sensor raises out of Airflow's entry points in
    ``credential_scan.CAPTURED`` (the credential tests search them; see ``tests/credential_scan.py``)."""
    record_raised_by_operators(monkeypatch)
