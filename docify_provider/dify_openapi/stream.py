"""The account API's stream verdict: the Service API's (``docify_provider.dify.stream``) under its own errors.

Chat and completion apps end at ``message_end``; a paused run names the forms it waits on.
"""

from __future__ import annotations

from typing import Any

from docify_provider.dify.models import WorkflowEvent
from docify_provider.dify.stream import DifyEventTracker
from docify_provider.dify_openapi.errors import DifyOpenAPIError

__all__ = ["NO_LOOKUP", "OpenAPIEventTracker", "text_or_none"]

NO_LOOKUP = (
    " The user-scoped OpenAPI has no run-detail or log endpoint, so a run whose id was never seen cannot "
    "be looked up: check the app's logs in the Dify console."
)


class OpenAPIEventTracker(DifyEventTracker):
    """The Service API's stream verdict (``error`` frames, ``continue_on_pause``, the C3/C4 event
    rules in the shared models) under ``DifyOpenAPIError``; chat and completion runs end at
    ``message_end``."""

    unknown_hint = NO_LOOKUP
    inputs_hint = (
        "If the message names an input, fix it (DifyOpenAPIHook.describe_app(app).input_schema lists the "
        "app's inputs) and run again."
    )

    def __init__(self, endpoint: str, **kwargs: Any) -> None:
        super().__init__(endpoint, errors=DifyOpenAPIError, **kwargs)

    def accept(self, event: WorkflowEvent) -> WorkflowEvent | None:
        accepted = super().accept(event)
        if accepted is not None and accepted.event == "message_end":
            # Chat and completion apps end with message_end (no workflow events; advanced-chat sends both).
            self.terminal, self.done = accepted, True
            self.session_id = self.session_id or text_or_none(accepted.raw.get("message_id"))
        return accepted

    def ends_stream(self, event: WorkflowEvent) -> bool:
        if event.event == "message_end":
            return self.done
        return super().ends_stream(event)

    @property
    def paused_forms(self) -> list[Any]:
        """The forms the run waits on when it paused (the ``workflow_paused`` reasons)."""
        terminal = self.terminal
        return terminal.forms if terminal is not None and terminal.event == "workflow_paused" else []


def text_or_none(value: Any) -> str | None:
    """``value`` as text, ``None`` for a missing or empty one."""
    return None if value in (None, "") else str(value)
