"""What differs between the Airflow lines the provider supports (3.0 to 3.3), in one place.

Everything else in the package is written against one API; where Airflow 3.0, 3.1 or 3.2 lacks
a feature or names it differently, the difference is handled here (or, for a whole feature such
as ``task_state_store``, next to the feature with a log line that says what happens instead).
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from docify_provider._core.config import Secret

log = logging.getLogger(__name__)

#: Digests of the secrets this process has already masked (never the secrets themselves).
_MASKED: set[str] = set()


@cache
def airflow_version() -> tuple[int, int]:
    """(major, minor) of the installed Airflow, e.g. ``(3, 0)``."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("apache-airflow-core").split(".")[:2])
    return major, minor


def mask_secret_once(secret: str | Secret) -> None:
    """Register ``secret`` with Airflow's secrets masker, once per process.

    Each ``mask_secret`` call inside a task sends a message to the supervisor, and Airflow 3.0.6's
    supervisor logs every such message, value included, at debug level: masking the key once
    instead of once per hook keeps that to a single line (which only debug logging shows; it is
    Airflow's own line, not the provider's). The secret is looked up in the places Airflow 3.0 to
    3.3 keep ``mask_secret``; common-compat releases before 1.21 do not re-export it.
    """
    from docify_provider._core.config import reveal

    value = reveal(secret)
    if not value:
        return
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    if digest in _MASKED:
        return
    # Airflow 3.0's mask_secret tells the supervisor through a sync call that refuses to run in an
    # event loop (the triggerer's): "You cannot use AsyncToSync in the same thread as an async event
    # loop". There the masker of this process is told directly; the triggerer's supervisor already
    # masks what it hands out as a connection's password.
    local_only = airflow_version() < (3, 1) and _in_event_loop()
    mask = _local_masker_add() if local_only else _mask_secret_function()
    if mask is None:  # pragma: no cover - every supported Airflow has one
        log.warning("Airflow's secrets masker was not found; the Docify key is not masked in logs")
        return
    try:
        mask(value)
    except Exception as exc:  # masking must never fail a run that may already be paid for
        log.warning("Could not register the Docify key with Airflow's secrets masker (%s)", type(exc).__name__)
        return
    _MASKED.add(digest)


@cache
def has_hitl() -> bool:
    """Airflow's human-in-the-loop requests exist (3.1+: ``hitl_detail``, the Required Actions UI).

    Checked through the Task SDK module that writes them, not the version alone, so a build
    without it falls back to waiting for an answer given in the backend's own UI.
    """
    if airflow_version() < (3, 1):
        return False
    import importlib.util

    return importlib.util.find_spec("airflow.sdk.execution_time.hitl") is not None


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _local_masker_add() -> Callable[[str], None] | None:
    try:
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker
    except ImportError:  # pragma: no cover - only Airflow 3.0 takes this path
        return None
    return _secrets_masker().add_mask


def _mask_secret_function() -> Callable[[str], None] | None:
    import importlib

    for module in (
        "airflow.providers.common.compat.sdk",
        "airflow.sdk.log",  # 3.1+
        "airflow.sdk.execution_time.secrets_masker",  # 3.0
        "airflow.utils.log.secrets_masker",
    ):
        try:
            function = getattr(importlib.import_module(module), "mask_secret", None)
        except ImportError:
            continue
        if callable(function):
            return function
    return None


__all__ = ["airflow_version", "has_hitl", "mask_secret_once"]
