"""The Docify wire layer: models, errors, and sync/async HTTP clients. No Airflow imports here.

Usable on its own (scripts, notebooks, other orchestrators)::

    from docify_provider.client import ClientConfig, DocifyClient

    with DocifyClient(ClientConfig(api_key="...")) as client:
        info = client.get_scenario_info()
        result = client.run({"query": "text"}, scenario=info)
"""

from __future__ import annotations

from docify_provider.client.aio import AsyncDocifyClient
from docify_provider.client.config import DEFAULT_BASE_URL, ClientConfig
from docify_provider.client.errors import *  # noqa: F403
from docify_provider.client.errors import __all__ as _errors
from docify_provider.client.files import safe_file_name
from docify_provider.client.inputs import normalize_inputs, validate_inputs
from docify_provider.client.models import (
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
from docify_provider.client.protocol import DocifyProtocol, Endpoint
from docify_provider.client.sync import DocifyClient

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
