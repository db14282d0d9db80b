"""What is Docify-specific about the wire: paths, request bodies, response parsing (sans-IO).

The sync and async clients drive HTTP; this module only says *what* to send and how to read the
answer. A second backend (Dify's workflow API) implements the same ``Protocol`` surface with its
own paths and parsers and reuses the clients, retries, SSE decoding and error mapping unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from docify_provider.client.models import RunResult, ScenarioInfo, StreamEvent, UploadedFile


@dataclass(frozen=True)
class Endpoint:
    """One API operation.

    ``repeatable`` says whether re-sending after the request may have reached the server is safe:
    true for reads and uploads (an extra upload costs nothing), false for runs (they cost points and
    have no idempotency key).
    """

    name: str
    method: str
    path: str
    repeatable: bool
    streaming: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class DocifyProtocol:
    """The Docify OpenAPI (``GET /v1/scenario/info``, ``POST /v1/scenario/run[/streaming]``, upload)."""

    name = "docify"
    INFO = Endpoint("info", "GET", "/v1/scenario/info", repeatable=True)
    RUN = Endpoint("run", "POST", "/v1/scenario/run", repeatable=False)
    STREAM = Endpoint("stream", "POST", "/v1/scenario/run/streaming", repeatable=False, streaming=True)
    UPLOAD = Endpoint("upload", "POST", "/v1/file/upload", repeatable=True)
    DOWNLOAD = Endpoint("download", "GET", "<attachment url>", repeatable=True, streaming=True)

    @staticmethod
    def run_body(inputs: dict[str, dict[str, Any]], *, user: str, additional_info: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"user": user, "inputs": inputs}
        if additional_info is not None:
            # The API documents additionalInfo as a string holding JSON.
            body["additionalInfo"] = (
                additional_info if isinstance(additional_info, str) else json.dumps(additional_info)
            )
        return body

    @staticmethod
    def upload_fields(*, user: str) -> dict[str, str]:
        """Multipart fields besides ``file``. Only what the server reads: ``user``."""
        return {"user": user}

    parse_info = staticmethod(ScenarioInfo.from_api)
    parse_run = staticmethod(RunResult.from_api)
    parse_upload = staticmethod(UploadedFile.from_api)
    parse_event = staticmethod(StreamEvent.from_api)

    @staticmethod
    def error_message(payload: Any) -> str | None:
        """The human part of an error body (``{"code": 400, "message": "..."}``)."""
        if isinstance(payload, dict):
            for key in ("message", "msg", "error", "errorMessage", "detail"):
                if payload.get(key):
                    return str(payload[key])
        return None
