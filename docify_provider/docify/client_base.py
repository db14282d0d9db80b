"""Docify's requests over the shared transport, once for both clients (sans-IO).

``ClientBase`` adds Docify's request bodies and the upload checks of its file rules to
``HTTPBase``; ``_async/client.py`` (hand-written) and ``_sync/client.py`` (generated from it by
``scripts/unasync.py``) only drive the I/O. Callers import the clients from ``client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from docify_provider._core.transport_base import HTTPBase
from docify_provider.docify.config import ClientConfig
from docify_provider.docify.files import UploadSource, open_upload_source
from docify_provider.docify.inputs import normalize_inputs, validate_inputs
from docify_provider.docify.models import FileType, ScenarioInfo
from docify_provider.docify.protocol import DocifyProtocol


class ClientBase(HTTPBase):
    """Docify's requests over the shared transport (mixed with ``SyncHTTP`` or ``AsyncHTTP``)."""

    protocol: type[DocifyProtocol] = DocifyProtocol

    def __init__(self, config: ClientConfig, *, protocol: type[DocifyProtocol] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        if protocol is not None:
            self.protocol = protocol

    def _run_body(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None,
        additional_info: Any,
        scenario: ScenarioInfo | None,
    ) -> dict[str, Any]:
        wire = normalize_inputs(inputs)
        if scenario is not None:
            validate_inputs(scenario, wire)
        return self.protocol.run_body(wire, user=user or self.config.default_user, additional_info=additional_info)

    def _upload_request(
        self,
        source: Any,
        *,
        user: str | None,
        file_type: FileType | str | None,
        file_name: str | None,
        stack: contextlib.ExitStack,
    ) -> tuple[UploadSource, Callable[[], dict[str, Any]]]:
        """Check ``source`` against Docify's rules (before any request); return per-attempt kwargs."""
        upload = open_upload_source(source, file_name=file_name, file_type=file_type)
        fields = self.protocol.upload_fields(user=user or self.config.default_user)
        return upload, self._upload_kwargs(upload, fields, stack)
