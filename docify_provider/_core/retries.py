"""When a request may be repeated, and how long to wait: one policy for sync and async clients.

The rule that protects the user's money: a run request is repeated only when it certainly never
reached the server (the connection was not established). Reads and uploads are repeated on
connection errors, 429 (after ``Retry-After``, capped) and 502/503/504, with exponential backoff
and jitter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tenacity import retry_if_exception, stop_after_attempt, wait_exponential_jitter

from docify_provider._core.errors import RateLimitedError, ServerError, TransportError

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from docify_provider._core.config import ClientConfig
    from docify_provider._core.endpoints import Endpoint

RETRYABLE_STATUS = frozenset({502, 503, 504, 524})


def is_retryable(exc: BaseException, endpoint: Endpoint) -> bool:
    if isinstance(exc, TransportError):
        return not exc.request_sent or endpoint.repeatable
    if not endpoint.repeatable:
        return False
    if isinstance(exc, RateLimitedError):
        return True
    return isinstance(exc, ServerError) and exc.status_code in RETRYABLE_STATUS


class _Wait:
    """Honour the server's ``Retry-After`` (capped) when it sent one, else back off with jitter."""

    def __init__(self, config: ClientConfig):
        self.cap = config.retry_after_cap
        self.backoff = wait_exponential_jitter(initial=config.backoff_initial, max=config.backoff_max)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.backoff(state))


class _LogRetry:
    """Log each retry under the backend's logger (``ClientConfig.retry_logger``), naming the service."""

    def __init__(self, config: ClientConfig) -> None:
        self.label = config.label
        self.log = logging.getLogger(config.retry_logger)

    def __call__(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0
        self.log.warning("%s request failed (%s); retry %d in %.1fs", self.label, exc, state.attempt_number, sleep)


def retry_kwargs(config: ClientConfig, endpoint: Endpoint) -> dict[str, Any]:
    """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``."""
    return {
        "stop": stop_after_attempt(config.max_retries + 1),
        "wait": _Wait(config),
        "retry": retry_if_exception(lambda exc: is_retryable(exc, endpoint)),
        "before_sleep": _LogRetry(config),
        "reraise": True,
    }
