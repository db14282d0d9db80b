"""``DocifyRetryPolicy``: decide from the *type* of a Docify failure whether a retry can help.

Airflow 3.3 lets a task carry a ``retry_policy`` that sees the actual exception before the
task's ``retries`` are spent. Docify failures fall into three groups, and the policy maps each to
one decision:

* **FAIL at once** - a retry cannot fix it, or a retry would need the user's consent to pay again:
  a rejected key (401/403), invalid inputs or files, an unusable connection, a 400, a 404, and a
  run whose outcome is unknown (it may already have been started and billed; the operator's next
  try would refuse to pay again anyway, so waiting for it only delays the alert). The provider's
  operators already fail these at once on every Airflow line (``operators.fail_fast``: their
  ``AirflowFailException`` reaches Airflow before any policy), so for them this branch changes
  nothing; it matters for tasks that call the hooks and clients themselves. An unknown outcome the
  operator's next try settles (it re-attaches to the run, finds it in Dify's logs, or
  ``allow_resubmit`` consents) is marked so (``ProviderError.next_try``) and goes to DEFAULT.
* **RETRY after the server's ``Retry-After``** (capped at ``max_retry_after``) - a rate limit. A
  429 on a run request means nothing was started, and a 429 on a download after a bought run is
  safe because the result is reused from ``task_state_store``.
* **DEFAULT** - everything else (5xx, connection failures before a run was sent, failed runs,
  unsafe downloads, errors that are not Docify's): the task's own ``retries`` and
  ``retry_delay`` decide, as without a policy.

Usage::

    from docify_provider.policies import DocifyRetryPolicy

    DocifyStreamScenarioOperator(..., retries=3, retry_policy=DocifyRetryPolicy())

The policy only exists on Airflow 3.3+. On older Airflow this module still imports (so a shared
DAG file can test ``RETRY_POLICIES_AVAILABLE``), and ``DocifyRetryPolicy`` raises an
``ImportError`` that says why when it is looked up.
"""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from docify_provider._core.errors import ProviderError, RateLimitedError


def _retry_policies_available() -> bool:
    # The SDK module that defines retry policies exists from Airflow 3.3 on.
    try:
        return importlib.util.find_spec("airflow.sdk.definitions.retry_policy") is not None
    except ModuleNotFoundError:  # no airflow.sdk at all (Airflow 2)
        return False


#: True when the running Airflow supports ``retry_policy=`` (3.3+) and ``DocifyRetryPolicy`` exists.
RETRY_POLICIES_AVAILABLE = _retry_policies_available()

#: Longest server-requested wait the policy honours by default; a longer ``Retry-After`` is cut to it.
DEFAULT_MAX_RETRY_AFTER = timedelta(minutes=10)

#: Follow explicit ``raise ... from`` chains this deep to find the Docify error behind a wrapper.
_MAX_CAUSE_DEPTH = 10


def docify_cause(exception: BaseException) -> ProviderError | None:
    """The provider error (``DocifyError``, ``DifyError``) that is ``exception`` or its explicit cause.

    Only ``__cause__`` is followed, not ``__context__``: an error raised *while handling* a Docify
    error is a different failure, and deciding on the handled one could fail a retryable task.
    """
    current: BaseException | None = exception
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            return None
        if isinstance(current, ProviderError):
            return current
        current = current.__cause__
    return None


def _fail_reason(error: ProviderError) -> str | None:
    """Why retrying ``error`` is pointless or needs consent; None when a retry may help.

    The decision is the error class's own (``ProviderError.not_retried_because``), so the policy,
    the operators and the trigger codec cannot disagree about it.
    """
    return error.not_retried_because()


def _as_timedelta(value: timedelta | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


if TYPE_CHECKING or RETRY_POLICIES_AVAILABLE:
    try:
        from airflow.providers.common.compat.sdk import RetryDecision, RetryPolicy
    except ImportError:  # a common-compat provider that predates retry policies; Airflow has them
        from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

    if TYPE_CHECKING:
        from airflow.providers.common.compat.sdk import Context

    class DocifyRetryPolicy(RetryPolicy):
        """Fail at once when a retry cannot help or would pay again; honour rate limits; else default.

        :param max_retry_after: longest ``Retry-After`` honoured for a rate limit (a ``timedelta``
            or seconds; default 10 minutes). A longer one is cut to this, so one slow answer from
            the server cannot park a task for hours.

        The decision is made on the ``DocifyError`` raised by the task, or the one it was raised
        ``from``. RETRY is still bounded by the task's ``retries``; once they are spent Airflow
        fails the task as usual.
        """

        def __init__(self, *, max_retry_after: timedelta | float = DEFAULT_MAX_RETRY_AFTER) -> None:
            cap = _as_timedelta(max_retry_after)
            if cap < timedelta(0):
                raise ValueError(f"max_retry_after must not be negative, got {max_retry_after!r}")
            self.max_retry_after = cap

        def evaluate(
            self,
            exception: BaseException,
            try_number: int,
            max_tries: int,
            context: Context | None = None,
        ) -> RetryDecision:
            """FAIL, RETRY (rate limits, with the server's delay) or DEFAULT for ``exception``."""
            error = docify_cause(exception)
            if error is None:
                return RetryDecision.default()
            reason = _fail_reason(error)
            if reason is not None:
                return RetryDecision.fail(reason)
            if isinstance(error, RateLimitedError):
                return self._rate_limited(error)
            return RetryDecision.default()

        def _rate_limited(self, error: RateLimitedError) -> RetryDecision:
            if error.retry_after is None:
                return RetryDecision.retry(
                    reason=f"{error.label} rate limit (HTTP 429) without Retry-After; "
                    "retrying after the task's retry_delay"
                )
            asked = timedelta(seconds=max(0.0, float(error.retry_after)))
            delay = min(asked, self.max_retry_after)
            capped = f" (server asked {asked.total_seconds():g}s, capped by max_retry_after)" if delay < asked else ""
            return RetryDecision.retry(
                delay=delay,
                reason=f"{error.label} rate limit (HTTP 429); retrying in {delay.total_seconds():g}s{capped}",
            )

        def serialize(self) -> dict[str, Any]:
            """JSON form of the policy (its only setting is ``max_retry_after``)."""
            return {"__type": "DocifyRetryPolicy", "max_retry_after": self.max_retry_after.total_seconds()}

        @classmethod
        def deserialize(cls, data: dict[str, Any]) -> DocifyRetryPolicy:
            """Rebuild the policy from :meth:`serialize`'s output."""
            return cls(max_retry_after=float(data.get("max_retry_after", DEFAULT_MAX_RETRY_AFTER.total_seconds())))

        def __repr__(self) -> str:
            return f"DocifyRetryPolicy(max_retry_after={self.max_retry_after!r})"

    __all__ = [
        "DEFAULT_MAX_RETRY_AFTER",
        "RETRY_POLICIES_AVAILABLE",
        "DocifyRetryPolicy",
        "docify_cause",
    ]

else:  # pragma: no cover - Airflow < 3.3

    def __getattr__(name: str) -> Any:
        if name == "DocifyRetryPolicy":
            raise ImportError(
                "DocifyRetryPolicy needs Airflow 3.3 or later (the retry_policy= task argument and "
                "airflow.sdk.definitions.retry_policy); this Airflow has no retry policies. Use the task's "
                "retries instead: Docify's own operators already never re-send a run whose outcome is unknown."
            )
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    __all__ = ["DEFAULT_MAX_RETRY_AFTER", "RETRY_POLICIES_AVAILABLE", "docify_cause"]
