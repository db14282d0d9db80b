"""A bundled, standalone Docify API emulator for testing clients over real HTTP.

It shares no code with the provider's client (so it cannot mirror the client's bugs) and
needs only the standard library and python-multipart.

    from docify_provider.testing import DocifyEmulator, Fault, INVOICE_KEY

    with DocifyEmulator() as emu:
        emu.inject(Fault("run", "status", status=429, retry_after=1))
        ...  # point the client at emu.base_url with INVOICE_KEY

``DifyEmulator`` (:mod:`docify_provider.testing.dify`) serves the Dify Workflow Service API
(``emu.base_url`` ends in ``/v1``) with the app keys ``TEXT_APP_KEY`` and the others below.
``DifyOpenAPIEmulator`` (:mod:`docify_provider.testing.dify_openapi`, constants there) serves
Dify's user-scoped OpenAPI (``/openapi/v1``, bearer account tokens).

Every emulator serves its counters (runs started = billed, completed, uploads, downloads,
requests; ``emu.counters()``) as JSON at ``GET /_emulator/counters``, at the root of the host and
not under the API prefix. ``python -m docify_provider.testing --help`` runs one from the command
line (default ports: docify 8765, dify 8766, dify-openapi 8767).
"""

from docify_provider.testing.dify import (
    DISABLED_APP_KEY,
    DOCUMENT_APP_KEY,
    HUMAN_INPUT_APP_KEY,
    LONG_APP_KEY,
    TEXT_APP_KEY,
    DifyEmulator,
)
from docify_provider.testing.dify_openapi import DifyOpenAPIEmulator
from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.faults import Fault
from docify_provider.testing.keys import BUNDLE_KEY, FORBIDDEN_KEY, INVOICE_KEY, SUMMARY_KEY, fingerprint
from docify_provider.testing.records import DownloadRecord, RequestRecord, UploadRecord
from docify_provider.testing.scenarios import FileInput, Scenario

__all__ = [
    "BUNDLE_KEY",
    "DISABLED_APP_KEY",
    "DOCUMENT_APP_KEY",
    "FORBIDDEN_KEY",
    "HUMAN_INPUT_APP_KEY",
    "INVOICE_KEY",
    "LONG_APP_KEY",
    "SUMMARY_KEY",
    "TEXT_APP_KEY",
    "DifyEmulator",
    "DifyOpenAPIEmulator",
    "DocifyEmulator",
    "DownloadRecord",
    "Fault",
    "FileInput",
    "RequestRecord",
    "Scenario",
    "UploadRecord",
    "fingerprint",
]
