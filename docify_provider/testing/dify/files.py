"""Signed tool-file URLs, as Dify serves workflow output files (``/files/tools/<id>.<ext>``).

Dify signs ``file-preview|<id>|<timestamp>|<nonce>`` with the server's secret key (HMAC-SHA256,
URL-safe base64) and refuses an unsigned, tampered or expired URL with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from urllib.parse import urlencode


def _sign(file_id: str, timestamp: str, nonce: str, secret: bytes) -> str:
    message = f"file-preview|{file_id}|{timestamp}|{nonce}".encode()
    return base64.urlsafe_b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def signed_url(files_base: str, file_id: str, extension: str, secret: bytes) -> str:
    """``<files_base>/files/tools/<id><extension>?timestamp=..&nonce=..&sign=..``."""
    timestamp, nonce = str(int(time.time())), os.urandom(16).hex()
    query = urlencode({"timestamp": timestamp, "nonce": nonce, "sign": _sign(file_id, timestamp, nonce, secret)})
    return f"{files_base}/files/tools/{file_id}{extension}?{query}"


def verify(file_id: str, timestamp: str, nonce: str, sign: str, secret: bytes, timeout: float) -> bool:
    """Whether the signature is right and the URL is at most ``timeout`` seconds old."""
    if not hmac.compare_digest(sign, _sign(file_id, timestamp, nonce, secret)):
        return False
    try:
        return time.time() - int(timestamp) <= timeout
    except ValueError:
        return False
