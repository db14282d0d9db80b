"""The shared retry policy (``docify_provider._core.retries``), under its old name."""

from __future__ import annotations

from docify_provider._core.retries import RETRYABLE_STATUS, is_retryable, retry_kwargs

__all__ = ["RETRYABLE_STATUS", "is_retryable", "retry_kwargs"]
