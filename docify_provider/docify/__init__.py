"""The Docify wire layer: models, errors, and sync/async HTTP clients. No Airflow imports here.

Usable on its own (scripts, notebooks, other orchestrators)::

    from docify_provider.docify import ClientConfig, DocifyClient

    with DocifyClient(ClientConfig(api_key="...")) as client:
        info = client.get_scenario_info()
        result = client.run({"query": "text"}, scenario=info)
"""

from __future__ import annotations

from docify_provider.docify.client import AsyncDocifyClient, DocifyClient
from docify_provider.docify.config import DEFAULT_BASE_URL, ClientConfig
from docify_provider.docify.errors import *  # noqa: F403
from docify_provider.docify.errors import __all__ as _errors
from docify_provider.docify.files import safe_file_name
from docify_provider.docify.inputs import normalize_inputs, validate_inputs
from docify_provider.docify.models import (
    EventType,
    FileType,
    Parameter,
    ParameterType,
    ResultFile,
    RunResult,
    ScenarioInfo,
    StreamEvent,
    UploadedFile,
)
from docify_provider.docify.protocol import DocifyProtocol, Endpoint

__all__ = [
    *_errors,
    "DEFAULT_BASE_URL",
    "AsyncDocifyClient",
    "ClientConfig",
    "DocifyClient",
    "DocifyProtocol",
    "Endpoint",
    "EventType",
    "FileType",
    "Parameter",
    "ParameterType",
    "ResultFile",
    "RunResult",
    "ScenarioInfo",
    "StreamEvent",
    "UploadedFile",
    "normalize_inputs",
    "safe_file_name",
    "validate_inputs",
]
