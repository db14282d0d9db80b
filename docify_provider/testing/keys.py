"""Default API keys of the emulator and the fingerprint used instead of keys in records.

The emulator records every request for assertions, but a test log or a failure report must
never show an API key (even a fake one: the same code paths carry real keys in production).
Records therefore hold :func:`fingerprint` values, which tests compute the same way.
"""

from __future__ import annotations

import hashlib

INVOICE_KEY = "emulator-invoice-key"
SUMMARY_KEY = "emulator-summary-key"
BUNDLE_KEY = "emulator-bundle-key"
FORBIDDEN_KEY = "emulator-forbidden-key"

#: (key, scenario code, forbidden) registered by every new ``DocifyEmulator``.
DEFAULT_KEYS: tuple[tuple[str, str, bool], ...] = (
    (INVOICE_KEY, "OCR_INVOICE", False),
    (SUMMARY_KEY, "TEXT_SUMMARY", False),
    (BUNDLE_KEY, "DOC_BUNDLE", False),
    (FORBIDDEN_KEY, "OCR_INVOICE", True),
)


def fingerprint(key: str) -> str:
    """Return a short, stable, non-reversible tag for ``key`` (first 12 hex chars of its sha256)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
