"""Whether a run Dify stored is the one a lost request sent: its inputs, compared as Dify keeps them.

Used to find a blocking run whose answer was lost (``client.RunRecovery``): a candidate from the
logs is confirmed only when every input sent matches its run detail's ``inputs``. Dify stores
them transformed (files as file objects, numbers as floats, defaults filled in, NUL stripped), and
the newest server sends them as a JSON string (Part C6), so each value is compared in that form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["inputs_match"]


def _same_file(sent: Mapping[str, Any], stored: Any) -> bool:
    if not isinstance(stored, Mapping):
        return False
    if sent.get("upload_file_id"):
        ids = {stored.get(k) for k in ("related_id", "upload_file_id", "id")}
        return sent["upload_file_id"] in ids
    url = sent.get("url") or sent.get("remote_url")
    if url:
        return url in (stored.get("remote_url"), stored.get("url"))
    return True


def _same_value(sent: Any, stored: Any) -> bool:
    if isinstance(sent, Mapping) and "transfer_method" in sent:
        return _same_file(sent, stored)
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(_same_value, sent, stored))
    if isinstance(sent, bool):
        return stored in (sent, str(sent).lower(), int(sent))
    if isinstance(sent, (int, float)):
        try:
            return float(stored) == float(sent)
        except (TypeError, ValueError):
            return False
    if isinstance(sent, str):
        return isinstance(stored, str) and stored == sent.replace("\x00", "")
    if isinstance(sent, Mapping) and isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    return bool(stored == sent)


def inputs_match(sent: Mapping[str, Any], stored: Any) -> bool:
    """Whether a run's stored ``inputs`` (run detail) are the ones that were sent.

    Dify stores inputs transformed (files as file objects, numbers as floats, defaults filled in,
    NUL stripped): each value sent is compared in the form Dify keeps; empty ones are skipped.
    """
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    if not isinstance(stored, Mapping):
        return False
    return all(_same_value(value, stored.get(name)) for name, value in sent.items() if value not in (None, "", []))
