"""Docify's client configuration: the shared ``ClientConfig`` with Docify's base URL and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from docify_provider._core import config as core
from docify_provider._core.config import DEFAULT_USER, Secret, is_loopback, redact_key, reveal
from docify_provider.docify.errors import DocifyError

DEFAULT_BASE_URL = "https://console.docify.jp/docify"

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_USER", "ClientConfig", "Secret", "is_loopback", "redact_key", "reveal"]


@dataclass(frozen=True)
class ClientConfig(core.ClientConfig):
    """Everything a Docify client needs (see ``docify_provider._core.config.ClientConfig``)."""

    label: ClassVar[str] = "Docify"
    errors: ClassVar[type[DocifyError]] = DocifyError
    api_suffix: ClassVar[str] = "/docify"
    api_name: ClassVar[str] = "Docify's API"
    retry_logger: ClassVar[str] = "docify_provider.docify.retries"

    base_url: str = DEFAULT_BASE_URL
