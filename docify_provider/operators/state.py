"""The task state moved to ``docify_provider.durable.state``; these names stay importable here."""

from __future__ import annotations

from docify_provider.durable.state import VARIABLE_PREFIX, TaskState, variable_key

__all__ = ["VARIABLE_PREFIX", "TaskState", "variable_key"]
