"""What is Docify-specific about the wire: paths, request bodies, response parsing (sans-IO).

The sync and async clients drive HTTP; this module only says *what* to send and how to read the
answer. A second backend (Dify's workflow API) implements the same ``Protocol`` surface with its
own paths and parsers and reuses the clients, retries, SSE decoding and error mapping unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from docify_provider._core.endpoints import Endpoint
from docify_provider._core.http_errors import error_message
from docify_provider._core.transport import DOWNLOAD
from docify_provider.docify.models import RunResult, ScenarioInfo, StreamEvent, UploadedFile

__all__ = ["DocifyProtocol", "Endpoint"]


class DocifyProtocol:
    """The Docify OpenAPI (``GET /v1/scenario/info``, ``POST /v1/scenario/run[/streaming]``, upload)."""

    name = "docify"
    INFO = Endpoint("info", "GET", "/v1/scenario/info", repeatable=True)
    RUN = Endpoint("run", "POST", "/v1/scenario/run", repeatable=False)
    STREAM = Endpoint("stream", "POST", "/v1/scenario/run/streaming", repeatable=False, streaming=True)
    UPLOAD = Endpoint("upload", "POST", "/v1/file/upload", repeatable=True)
    DOWNLOAD = DOWNLOAD

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

    error_message = staticmethod(error_message)
