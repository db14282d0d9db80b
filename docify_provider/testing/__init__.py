"""A bundled, standalone Docify API emulator for testing clients over real HTTP.

It shares no code with the provider's client (so it cannot mirror the client's bugs) and
needs only the standard library and python-multipart.

    from docify_provider.testing import DocifyEmulator, Fault, INVOICE_KEY

    with DocifyEmulator() as emu:
        emu.inject(Fault("run", "status", status=429, retry_after=1))
        ...  # point the client at emu.base_url with INVOICE_KEY
"""

from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.faults import Fault
from docify_provider.testing.keys import BUNDLE_KEY, FORBIDDEN_KEY, INVOICE_KEY, SUMMARY_KEY, fingerprint
from docify_provider.testing.records import DownloadRecord, RequestRecord, UploadRecord
from docify_provider.testing.scenarios import FileInput, Scenario

__all__ = [
    "BUNDLE_KEY",
    "FORBIDDEN_KEY",
    "INVOICE_KEY",
    "SUMMARY_KEY",
    "DocifyEmulator",
    "DownloadRecord",
    "Fault",
    "FileInput",
    "RequestRecord",
    "Scenario",
    "UploadRecord",
    "fingerprint",
]
