"""Fail a task at once, on every Airflow line, when its error says a retry cannot help.

Bad inputs, an unusable connection, a rejected key, a 400 or 404, and a run whose outcome is
unknown (re-sending it could pay twice) are not fixed by trying again
(``ProviderError.not_retried_because``). Airflow 3.3 can act on that through a retry policy
(``DocifyRetryPolicy``), but only when the task sets one; Airflow 3.0 to 3.2 have none. Without it
such a task waits out every retry and its delay before the alert. So the operators' entry points
(``execute``, ``resume_execution``: every fresh try and every resume after a deferral) raise
``AirflowFailException``, which every line fails without a retry, ``from`` the provider's error:
the message is the error's own text plus one sentence saying why it is not retried, and the error
itself stays reachable as ``__cause__`` for failure callbacks and ``except`` clauses.

An unknown outcome is final only when the next try would fail closed too: when its run can be
re-attached by id, or looked up in the app's logs (a Dify run whose id never arrived, ``Action.FIND``,
unless this try's own look failed), or ``allow_resubmit`` / ``force_rerun`` consent to sending it
again, the run operator says so (``RunOperatorBase.next_try``), the error is marked
(``ProviderError.next_try``) and left to the task's retries, and to the policy, which then retries it
as well. A batch's items that fail are results in its report, never raised here (``BatchFailedError``
and ``BatchTimeoutError`` are not provider errors: a retry sends only what is left).
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable

    from docify_provider._core.errors import ProviderError

F = TypeVar("F", bound="Callable[..., Any]")


def fail_message(error: ProviderError, why: str) -> str:
    """The error's text and one sentence saying why the task is not retried."""
    return f"{error}\nNot retried ({type(error).__name__}): {why}"


def not_retried(operator: Any, error: BaseException, context: Any) -> str | None:
    """Why ``error`` fails ``operator``'s task at once; None when the task's retries decide.

    An unknown outcome asks the run operator what its next try would decide (``next_try``): one that
    re-attaches or sends with consent marks the error (``next_try``) and leaves it to the retries;
    one that would fail closed names where the task state is and why the run cannot be followed.
    """
    from docify_provider._core.errors import ProviderError

    if not isinstance(error, ProviderError):
        return None
    if not error.outcome_unknown or error.next_try is not None:
        return error.why_not_retried()
    ask = getattr(operator, "next_try", None)
    known = ask(context) if callable(ask) and context is not None else None
    if known is None:
        return error.why_not_retried()
    decision, where = known
    settles = _settles(operator, decision)
    if settles is None:
        return error.why_not_retried(where=where, not_followed=decision.not_followed)
    error.next_try = settles
    name = type(error).__name__
    operator.log.info("%s is left to the task's retries: the next try %s, paying nothing twice", name, settles)
    return None


def _settles(operator: Any, decision: Any) -> str | None:
    """What a next try that does not fail closed does instead: re-attach, look the run up in the app's
    logs and re-attach (``Action.FIND``; not after this try's own look failed: the next would find what
    it found), or send with consent."""
    from docify_provider.durable.policy import Action

    if decision.action is Action.REATTACH:
        return f"re-attaches to {operator.label} run {decision.run_id}"
    if decision.action is Action.FIND and not getattr(operator, "_logs_searched", False):
        return (
            f"looks the run up in the app's logs (end user {decision.user!r}, sent at or after {decision.when}) "
            "and re-attaches to it"
        )
    if decision.action is Action.SEND and decision.resubmit:
        return f"sends the run again, as {'force_rerun' if operator.force_rerun else 'allow_resubmit'}=True allows"
    return None


def fails_fast(method: F) -> F:
    """Wrap an operator's entry point (``execute``, ``resume_execution``; its ``context`` argument
    found by name) so that an error a retry cannot help leaves as ``AirflowFailException``."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def entry(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            try:
                context = signature.bind(self, *args, **kwargs).arguments.get("context")
            except TypeError:  # pragma: no cover - the call itself was wrong; its error is the answer
                context = None
            why = not_retried(self, exc, context)
            if why is None:
                raise
            from airflow.providers.common.compat.sdk import AirflowFailException

            raise AirflowFailException(fail_message(cast("ProviderError", exc), why)) from exc

    return cast("F", entry)


__all__ = ["fail_message", "fails_fast", "not_retried"]
