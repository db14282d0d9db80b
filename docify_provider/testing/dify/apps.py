"""The workflow apps the Dify emulator serves, their app API keys and ``/parameters``.

Each app key is bound to one app (as on Dify); an app has the start-node variables that
``GET /v1/parameters`` lists and the server validates, and a ``kind`` naming the graph that
:mod:`docify_provider.testing.dify.engine` runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

TEXT_APP_KEY = "app-EmuTextWorkflow0000000001"
DOCUMENT_APP_KEY = "app-EmuDocumentWorkflow00002"
LONG_APP_KEY = "app-EmuLongWorkflow000000003"
HUMAN_INPUT_APP_KEY = "app-EmuHumanInputWorkflow004"
#: Two human-input forms one after the other: a review (approve / reject), then a sign-off.
TWO_FORMS_APP_KEY = "app-EmuTwoFormsWorkflow00006"
#: A key whose app has its API service disabled: 403 ``forbidden`` on every endpoint.
DISABLED_APP_KEY = "app-EmuDisabledWorkflow00005"

FILE_METHODS = ["local_file", "remote_url"]


def variable(type_: str, name: str, label: str, *, required: bool, **extra: Any) -> dict[str, Any]:
    """A start-node variable dict as Dify stores it (``type`` included)."""
    body: dict[str, Any] = {
        "variable": name,
        "label": label,
        "type": type_,
        "required": required,
        "hide": False,
        "description": "",
        "default": extra.pop("default", ""),
        "max_length": extra.pop("max_length", None),
        "options": extra.pop("options", []),
    }
    body.update(extra)
    return body


@dataclass
class DifyApp:
    """One workflow app: identity, start-node variables and the graph ``kind`` it runs."""

    code: str
    kind: str
    name: str
    description: str
    variables: list[dict[str, Any]]
    tags: list[str] = field(default_factory=list)
    author_name: str = "Emulator"
    app_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    workflow_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: str = "2026-01-01 00:00:00.000000"

    def info(self) -> dict[str, Any]:
        """The ``GET /v1/info`` body."""
        return {
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "mode": "workflow",
            "author_name": self.author_name,
        }

    def user_input_form(self) -> list[dict[str, Any]]:
        """The variables in Dify's old structure: ``[{variable["type"]: variable}]``."""
        return [{v["type"]: dict(v)} for v in self.variables]

    def variable(self, name: str) -> dict[str, Any] | None:
        return next((v for v in self.variables if v["variable"] == name), None)


def parameters_body(app: DifyApp, system_parameters: dict[str, Any]) -> dict[str, Any]:
    """The ``GET /v1/parameters`` body of a workflow app (features off, as on a plain app)."""
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": {"enabled": False},
        "speech_to_text": {"enabled": False},
        "text_to_speech": {"enabled": False, "voice": "", "language": ""},
        "retriever_resource": {"enabled": False},
        "annotation_reply": {"enabled": False},
        "more_like_this": {"enabled": False},
        "user_input_form": app.user_input_form(),
        "sensitive_word_avoidance": {"enabled": False, "type": "", "configs": []},
        "file_upload": {
            "image": {"enabled": False, "number_limits": 3, "detail": "high", "transfer_methods": list(FILE_METHODS)}
        },
        "system_parameters": dict(system_parameters),
    }


def _file_variable(type_: str, name: str, label: str, *, required: bool, **extra: Any) -> dict[str, Any]:
    return variable(type_, name, label, required=required, allowed_file_upload_methods=list(FILE_METHODS), **extra)


#: (code = graph kind, name, description, start-node variables) of the built-in apps.
_BUILTIN: tuple[tuple[str, str, str, list[dict[str, Any]]], ...] = (
    (
        "text",
        "Text Writer",
        "Writes a short text about a topic",
        [
            variable("text-input", "topic", "Topic", required=True, max_length=200),
            variable("select", "tone", "Tone", required=False, options=["neutral", "formal", "casual"]),
        ],
    ),
    (
        "document",
        "Document Summary",
        "Summarises a document and writes a CSV report",
        [
            _file_variable(
                "file",
                "document",
                "Document",
                required=True,
                allowed_file_types=["document"],
                allowed_file_extensions=[".pdf", ".txt", ".docx"],
            ),
            _file_variable(
                "file-list",
                "attachments",
                "Attachments",
                required=False,
                max_length=3,
                allowed_file_types=["document", "image"],
                allowed_file_extensions=[],
            ),
        ],
    ),
    (
        "long",
        "Long Job",
        "Runs for `seconds`, with `steps` long silent gaps",
        [
            variable("number", "seconds", "Seconds", required=False, default=2),
            variable("number", "steps", "Steps", required=False, default=1),
            # Names a run (e.g. one document of a batch), so that runs per input can be counted.
            variable("text-input", "label", "Label", required=False, max_length=200),
        ],
    ),
    (
        "human_input",
        "Review Gate",
        "Pauses for a human review, then writes the text",
        [variable("text-input", "topic", "Topic", required=True, max_length=200)],
    ),
    (
        "two_forms",
        "Review and Sign-off",
        "Pauses for a review, then for a sign-off, then writes the text",
        [variable("text-input", "topic", "Topic", required=True, max_length=200)],
    ),
)


def builtin_apps() -> dict[str, DifyApp]:
    """Fresh instances of the built-in apps keyed by code (the code is also the graph kind)."""
    return {
        code: DifyApp(
            code=code,
            kind=code,
            name=name,
            description=description,
            tags=["emulator", code],
            variables=[dict(v) for v in variables],
        )
        for code, name, description, variables in _BUILTIN
    }


#: (key, app code, disabled) registered by every new ``DifyEmulator``.
DEFAULT_APP_KEYS: tuple[tuple[str, str, bool], ...] = (
    (TEXT_APP_KEY, "text", False),
    (DOCUMENT_APP_KEY, "document", False),
    (LONG_APP_KEY, "long", False),
    (HUMAN_INPUT_APP_KEY, "human_input", False),
    (TWO_FORMS_APP_KEY, "two_forms", False),
    (DISABLED_APP_KEY, "text", True),
)
