"""The run policy holds every backend to one contract (``docify_provider.durable.policy``; no Airflow).

Each row of the policy's decision table, for Docify, the Dify Service API and the Dify account API
(whose chat and completion runs cannot be re-attached: ``without_reattach``), from the ledger's
record and from a trigger's restart marker alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docify_provider.durable import policy
from docify_provider.durable.policy import Action, Backend, Decision, Known, decide

BACKENDS = {
    "docify": policy.DOCIFY,
    "dify": policy.DIFY,
    "dify_openapi": policy.DIFY_OPENAPI,
    "dify_openapi_chat": policy.DIFY_OPENAPI.without_reattach("Dify cannot re-attach to a chat run"),
}
WHERE = "task_state_store key 'x_state'"


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


def pending(backend: Backend, run_id: str | None = None, **more: Any) -> dict[str, Any]:
    record = {"sent_at": "2030-01-01T00:00:00+00:00", "try_number": 1, backend.id_field: run_id, **more}
    return {"pending": record, "key": "x_state"}


def ledger(backend: Backend, stored: dict[str, Any], **flags: Any) -> Decision:
    return decide(Known.from_ledger(stored, backend), backend, where=WHERE, **flags)


def test_the_policy_imports_no_airflow() -> None:
    code = (
        "import sys, docify_provider.durable.policy; print(sorted(m for m in sys.modules if m.startswith('airflow')))"
    )
    root = Path(policy.__file__).parents[2]  # this checkout's, not an installed copy
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


def test_nothing_stored_sends(backend: Backend) -> None:
    decision = ledger(backend, {})
    assert decision == Decision(Action.SEND)


@pytest.mark.parametrize("allow_resubmit", [False, True])
def test_a_bought_result_is_reused(backend: Backend, allow_resubmit: bool) -> None:
    record = {"raw": {"a": 1}, backend.id_field: "r1", "try_number": 1}
    decision = ledger(backend, {"result": record, "key": "x_state"}, allow_resubmit=allow_resubmit)
    assert decision.action is Action.REUSE and decision.result == record and decision.run_id == "r1"
    assert "no new run was bought" in decision.message and "force_rerun=True" in decision.message


def test_force_rerun_buys_again_over_a_result(backend: Backend) -> None:
    decision = ledger(backend, {"result": {"raw": {}, "try_number": 2}}, force_rerun=True)
    assert decision.action is Action.SEND and "force_rerun=True" in decision.message and not decision.resubmit


def test_a_pending_run_with_its_id(backend: Backend) -> None:
    decision = ledger(backend, pending(backend, "r1", task_id="t1", user="u1"))
    if backend.can_reattach:
        assert (decision.action, decision.run_id, decision.task_id, decision.user) == (
            Action.REATTACH,
            "r1",
            "t1",
            "u1",
        )
        assert "Try 1 started Dify run r1; re-attaching to it instead of starting a new run" in decision.message
        # allow_resubmit never re-sends a run that can be followed
        assert ledger(backend, pending(backend, "r1"), allow_resubmit=True).action is Action.REATTACH
    else:
        assert decision.action is Action.UNKNOWN and decision.run_id == "r1"
        assert f"({backend.id_noun} r1)" in decision.message and backend.no_reattach in decision.message
        assert ledger(backend, pending(backend, "r1"), allow_resubmit=True).resubmit


def test_a_pending_run_without_its_id_is_unknown(backend: Backend) -> None:
    decision = ledger(backend, pending(backend))
    assert decision.action is Action.UNKNOWN
    message = decision.message
    assert message.startswith(f"{backend.label} run outcome unknown: try 1 already sent the run request")
    assert "at or after 2030-01-01T00:00:00+00:00" in message
    assert "may have been started and billed, so it is not re-sent" in message
    assert "allow_resubmit=True" in message and WHERE in message


def test_a_pending_run_without_its_id_is_looked_for_in_the_logs_where_the_backend_can(backend: Backend) -> None:
    """Only the Dify Service API looks such a run up (the deferred stream's trigger sends it); it needs
    the record's end user and time; a record of an earlier build without the user fails closed and says so."""
    decision = ledger(backend, pending(backend, user="u1"))
    if not backend.finds_in_logs:
        assert decision.action is Action.UNKNOWN and "logs" not in decision.message
        return
    assert (decision.action, decision.user, decision.when, decision.who) == (
        Action.FIND,
        "u1",
        "2030-01-01T00:00:00+00:00",
        "try 1",
    )
    assert decision.todo.startswith("Check the run in Dify; set allow_resubmit=True") and WHERE in decision.todo
    assert decision.message.endswith(decision.todo) and "so it is not re-sent" in decision.message
    old_build = ledger(backend, pending(backend))
    assert old_build.action is Action.UNKNOWN
    assert "written by an earlier build, does not name both the end user and the time" in old_build.message
    # a trigger's marker never searches (the worker does), and the opt-ins still re-send
    marker = {"state": "sent", "sent_at": "2030-01-01T00:00:00+00:00", backend.id_field: None}
    assert decide(Known.from_marker(marker, backend), backend).action is Action.UNKNOWN
    assert ledger(backend, pending(backend, user="u1"), allow_resubmit=True).resubmit


@pytest.mark.parametrize("flag", ["allow_resubmit", "force_rerun"])
def test_opting_in_resends_and_says_so(backend: Backend, flag: str) -> None:
    decision = ledger(backend, pending(backend), **{flag: True})
    assert decision.action is Action.SEND and decision.resubmit
    assert f"{flag}=True, so a new run is sent (the earlier one may also have been billed)" in decision.message


def test_force_rerun_does_not_reattach(backend: Backend) -> None:
    decision = ledger(backend, pending(backend, "r1"), force_rerun=True)
    assert decision.action is Action.SEND and decision.resubmit


@pytest.mark.parametrize("flags", [{}, {"allow_resubmit": True}, {"force_rerun": True}])
def test_state_that_cannot_be_read_is_unknown_whatever_the_flags(backend: Backend, flags: dict[str, bool]) -> None:
    known = Known.unreadable("Cannot read the restart marker (OperationalError: db gone).")
    decision = decide(known, backend, **flags)
    assert decision.action is Action.UNKNOWN
    assert "Cannot read the restart marker" in decision.message and "nothing is sent" in decision.message


# -- the trigger's restart marker ---------------------------------------------------------------


@pytest.mark.parametrize("marker", [None, {"state": "deferred", "sent": False}])
def test_no_marker_or_deferred_sends(backend: Backend, marker: Any) -> None:
    assert decide(Known.from_marker(marker, backend), backend).action is Action.SEND


def test_a_sent_marker(backend: Backend) -> None:
    marker = {"state": "sent", "sent_at": "2030-01-01T00:00:00+00:00", backend.id_field: None}
    decision = decide(Known.from_marker(marker, backend), backend)
    assert decision.action is Action.UNKNOWN
    assert "an earlier trigger of this task instance already sent the run request" in decision.message
    assert decide(Known.from_marker(marker, backend), backend, allow_resubmit=True).resubmit

    named = decide(Known.from_marker({**marker, backend.id_field: "r9", "task_id": "t9"}, backend), backend)
    if backend.can_reattach:
        assert (named.action, named.run_id, named.task_id) == (Action.REATTACH, "r9", "t9")
        assert "An earlier trigger of this task instance started Dify run r9; re-attaching" in named.message
    else:
        assert named.action is Action.UNKNOWN and f"({backend.id_noun} r9)" in named.message


def test_a_marker_that_is_not_a_mapping_reads_as_sent(backend: Backend) -> None:
    assert decide(Known.from_marker(["junk"], backend), backend).action is Action.UNKNOWN
