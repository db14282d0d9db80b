"""``DocifyRetryPolicy``: the decision for every Docify error, then real ``dag.test()`` runs.

The unit part calls ``evaluate()`` on real error objects (as the client raises them, and as the
deferred path rebuilds them from trigger events). The DAG part runs tasks with ``retries=3``
against the emulator and reads the tries back from the metadata DB: a rejected key and an
"outcome unknown" run stop after one try, a rate-limited run is retried after the server's
``Retry-After`` instead of the task's ``retry_delay`` and then succeeds, paying once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_helpers import conn_json, console_text, new_dag, run_dag
from docify_provider.docify import errors
from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator
from docify_provider.policies import RETRY_POLICIES_AVAILABLE, docify_cause
from docify_provider.testing import FORBIDDEN_KEY, SUMMARY_KEY, Fault
from docify_provider.testing.keys import fingerprint
from docify_provider.triggers.docify import error_from_event, error_to_event

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not RETRY_POLICIES_AVAILABLE, reason="retry policies need Airflow 3.3+"),
]

SUMMARY_INPUTS = {"text": "Retry policies decide. Tasks obey.", "language": "en"}


def _policy(**kwargs: Any) -> Any:
    from docify_provider.policies import DocifyRetryPolicy

    return DocifyRetryPolicy(**kwargs)


def _http(cls: type[errors.DocifyHTTPError], status: int) -> errors.DocifyHTTPError:
    return cls("Docify said no", status_code=status, endpoint="POST /v1/scenario/run", server_message="no")


def _rate_limited(retry_after: float | None) -> errors.DocifyRateLimitedError:
    return errors.DocifyRateLimitedError(
        "Rate limited", status_code=429, endpoint="POST /v1/scenario/run", retry_after=retry_after
    )


def _chained(outer: BaseException, cause: BaseException, *, explicit: bool) -> BaseException:
    """``outer`` raised from (or merely while handling) ``cause``, with real traceback chaining."""
    try:
        try:
            raise cause
        except BaseException as inner:
            if explicit:
                raise outer from inner
            raise outer  # implicit chaining (__context__) is what is tested
    except BaseException as caught:
        return caught


# -- evaluate() on every error type -----------------------------------------------------------------

FAIL_AT_ONCE = {
    "401": _http(errors.DocifyAuthenticationError, 401),
    "403": _http(errors.DocifyAuthenticationError, 403),
    "input": errors.DocifyInputError(["text: required"]),
    "file": errors.DocifyFileError(["invoice.exe: unsupported file type"]),
    "config": errors.DocifyConfigError("Refusing plain http:// base_url"),
    "400": _http(errors.DocifyBadRequestError, 400),
    "404": _http(errors.DocifyNotFoundError, 404),
    "outcome_unknown": errors.DocifyOutcomeUnknownError("no answer", session_id="session-abc"),
    "stream_incomplete": errors.DocifyStreamIncompleteError("ended", session_id="session-abc"),
    "run_timeout": errors.DocifyRunTimeoutError("read timeout", endpoint="POST /v1/scenario/run"),
}

DEFAULT = {
    "503": _http(errors.DocifyServerError, 503),
    "500": _http(errors.DocifyServerError, 500),
    "connect_failed": errors.DocifyTransportError("refused", request_sent=False),
    "connect_timeout": errors.DocifyTimeoutError("connect timeout", request_sent=False),
    "protocol": errors.DocifyProtocolError("not JSON"),
    "run_failed": errors.DocifyRunFailedError("scenario failed", run_id="run-1", error="boom"),
    "unsafe_download": errors.DocifyUnsafeDownloadError("size mismatch", endpoint="download"),
    "not_docify": RuntimeError("a bug in a callback"),
    "value_error": ValueError("not a DocifyInputError"),
}


@pytest.mark.parametrize("name", list(FAIL_AT_ONCE))
def test_errors_a_retry_cannot_fix_fail_at_once(name: str) -> None:
    from airflow.providers.common.compat.sdk import RetryAction

    decision = _policy().evaluate(FAIL_AT_ONCE[name], try_number=1, max_tries=4)
    assert decision.action is RetryAction.FAIL
    assert decision.reason and type(FAIL_AT_ONCE[name]).__name__ in decision.reason
    assert "retrying cannot fix" in decision.reason or "consent" in decision.reason


def test_outcome_unknown_reason_asks_for_consent_and_names_the_session() -> None:
    decision = _policy().evaluate(FAIL_AT_ONCE["outcome_unknown"], try_number=2, max_tries=4)
    assert decision.reason is not None
    assert "session session-abc" in decision.reason
    assert "paying twice" in decision.reason and "allow_resubmit=True" in decision.reason


def test_an_unknown_outcome_the_next_try_settles_goes_to_the_tasks_retries() -> None:
    """The operator marks an unknown outcome its next try re-attaches to (``fail_fast``): no FAIL then."""
    from airflow.providers.common.compat.sdk import RetryAction

    error = errors.DocifyStreamIncompleteError("ended", session_id="session-abc")
    error.next_try = "re-attaches to Dify run run-1"
    assert error.not_retried_because() is None
    assert _policy().evaluate(error, try_number=1, max_tries=4).action is RetryAction.DEFAULT


@pytest.mark.parametrize("name", list(DEFAULT))
def test_other_errors_fall_through_to_the_tasks_retries(name: str) -> None:
    from airflow.providers.common.compat.sdk import RetryAction

    decision = _policy().evaluate(DEFAULT[name], try_number=1, max_tries=4)
    assert decision.action is RetryAction.DEFAULT
    assert decision.retry_delay is None


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [
        (1, None, timedelta(seconds=1)),
        (0, None, timedelta(0)),
        (3600, None, timedelta(minutes=10)),  # default cap: 10 minutes
        (120, 30, timedelta(seconds=30)),
        (120, timedelta(minutes=5), timedelta(seconds=120)),
        (None, None, None),  # no Retry-After: the task's own retry_delay
    ],
)
def test_rate_limits_are_retried_after_the_servers_delay_capped(
    retry_after: float | None, cap: Any, expected: timedelta | None
) -> None:
    from airflow.providers.common.compat.sdk import RetryAction

    policy = _policy() if cap is None else _policy(max_retry_after=cap)
    decision = policy.evaluate(_rate_limited(retry_after), try_number=1, max_tries=4)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == expected
    assert decision.reason and "429" in decision.reason
    if retry_after == 3600:
        assert "capped by max_retry_after" in decision.reason


def test_explicit_cause_is_followed_but_not_the_handling_context() -> None:
    from airflow.providers.common.compat.sdk import RetryAction

    auth = _http(errors.DocifyAuthenticationError, 401)
    wrapped = _chained(RuntimeError("wrapper"), auth, explicit=True)
    assert docify_cause(wrapped) is auth
    assert _policy().evaluate(wrapped, 1, 4).action is RetryAction.FAIL
    # An unrelated failure while handling a 401 is a different problem: do not fail it at once.
    during = _chained(RuntimeError("cleanup failed"), _http(errors.DocifyAuthenticationError, 401), explicit=False)
    assert docify_cause(during) is None
    assert _policy().evaluate(during, 1, 4).action is RetryAction.DEFAULT


@pytest.mark.parametrize(
    ("exc", "action", "delay"),
    [
        (errors.DocifyStreamIncompleteError("cut", session_id="s-1"), "fail", None),
        (_http(errors.DocifyAuthenticationError, 403), "fail", None),
        (_rate_limited(2), "retry", timedelta(seconds=2)),
        (_http(errors.DocifyServerError, 502), "default", None),
        (RuntimeError("library bug after the POST"), "fail", None),  # posted: outcome unknown
    ],
)
def test_errors_rebuilt_from_trigger_events_get_the_same_decision(exc: BaseException, action: str, delay: Any) -> None:
    # Deferred streams fail in execute_complete with the error rebuilt from the trigger's event.
    rebuilt = error_from_event(error_to_event(exc, session_id="s-1", posted=True))
    decision = _policy().evaluate(rebuilt, try_number=1, max_tries=4)
    assert decision.action.value == action
    assert decision.retry_delay == delay


def test_outcome_unknown_trigger_event_fails_at_once() -> None:
    rebuilt = error_from_event({"status": "outcome_unknown", "message": "restarted", "session_id": "s-9"})
    decision = _policy().evaluate(rebuilt, try_number=1, max_tries=4)
    assert decision.action.value == "fail" and decision.reason and "session s-9" in decision.reason


def test_serialize_round_trip_and_bad_cap() -> None:
    from docify_provider.policies import DocifyRetryPolicy

    policy = DocifyRetryPolicy(max_retry_after=45)
    data = policy.serialize()
    assert data == {"__type": "DocifyRetryPolicy", "max_retry_after": 45.0}
    assert DocifyRetryPolicy.deserialize(data).max_retry_after == timedelta(seconds=45)
    assert repr(policy) == "DocifyRetryPolicy(max_retry_after=datetime.timedelta(seconds=45))"
    with pytest.raises(ValueError, match="must not be negative"):
        DocifyRetryPolicy(max_retry_after=-1)


# -- real DAG runs ------------------------------------------------------------------------------------


def _requests(emu: Any, endpoint: str, key: str | None = None) -> list[Any]:
    return [
        r for r in emu.requests if r.endpoint == endpoint and (key is None or r.key_fingerprint == fingerprint(key))
    ]


def test_rejected_key_and_unknown_outcome_stop_after_one_try(docify_conns, monkeypatch, capfd):
    emu = docify_conns
    monkeypatch.setenv("AIRFLOW_CONN_DOCIFY_FORBIDDEN", conn_json(emu.base_url, FORBIDDEN_KEY))
    # The summary run reaches Docify (and is billed), but the answer never comes back.
    emu.inject(Fault("run", "drop_before_response", run_started=True, key=SUMMARY_KEY, times=None))
    policy = _policy()
    retrying = {"retries": 3, "retry_delay": timedelta(seconds=0)}
    with new_dag("policy_fail_fast") as dag:
        DocifyRunScenarioOperator(
            task_id="forbidden",
            docify_conn_id="docify_forbidden",
            inputs=SUMMARY_INPUTS,
            retry_policy=policy,
            **retrying,
        )
        # Without the policy too: the operator fails a key that will not heal at once (AirflowFailException).
        DocifyRunScenarioOperator(
            task_id="forbidden_no_policy",
            docify_conn_id="docify_forbidden",
            inputs=SUMMARY_INPUTS,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
        DocifyRunScenarioOperator(
            task_id="unknown", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS, retry_policy=policy, **retrying
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("forbidden") == "failed" and out.try_number("forbidden") == 1
    assert out.state("forbidden_no_policy") == "failed" and out.try_number("forbidden_no_policy") == 1
    # One scenario-info request (validation) per task, each its only try, both 403.
    info = _requests(emu, "info", FORBIDDEN_KEY)
    assert [r.status for r in info] == [403] * 2, info
    assert out.state("unknown") == "failed" and out.try_number("unknown") == 1
    assert emu.runs_started(SUMMARY_KEY) == 1
    assert emu.runs_started(FORBIDDEN_KEY) == 0
    assert "Docify rejected the API key (HTTP 403); retrying cannot fix it" in logs
    assert "which needs the user's consent" in logs


def test_rate_limited_run_is_retried_after_retry_after_and_pays_once(docify_conns, capfd):
    emu = docify_conns
    # 429 on the run request: nothing was started, so a retry cannot pay twice.
    emu.inject(Fault("stream", "status", status=429, retry_after=1, times=1))
    with new_dag("policy_rate_limit") as dag:
        DocifyStreamScenarioOperator(
            task_id="summarise",
            docify_conn_id="docify_summary",
            inputs=SUMMARY_INPUTS,
            retries=3,
            # Far longer than Retry-After: the retry must follow the server, not this.
            retry_delay=timedelta(minutes=5),
            retry_policy=_policy(),
            # The policy's path: without this the try itself waits and sends again (test_not_started_wait.py).
            max_wait_not_started=0,
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("summarise") == "success"
    assert out.try_number("summarise") == 2
    assert out.xcom("summarise")["is_success"] is True
    assert [r.status for r in _requests(emu, "stream")] == [429, 200]
    assert emu.runs_started(SUMMARY_KEY) == 1
    first = _history(out, "summarise", try_number=1)
    assert first.retry_delay_override == 1.0
    assert first.retry_reason and "Docify rate limit (HTTP 429); retrying in 1s" in first.retry_reason
    assert "DocifyRunNotStartedError" in logs  # the 429 to a run request: not started


def _history(out: Any, task_id: str, try_number: int) -> Any:
    """The ``task_instance_history`` row Airflow archived for one finished try."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(TaskInstanceHistory).where(
                TaskInstanceHistory.dag_id == out.dag_id,
                TaskInstanceHistory.run_id == out.run_id,
                TaskInstanceHistory.task_id == task_id,
                TaskInstanceHistory.try_number == try_number,
            )
        ).one()
        session.expunge(row)
    return row
