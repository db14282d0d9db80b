"""How the Dify emulator's tests speak to it: request bodies, SSE frames and events, a streamed run, an
upload, a raw socket for what httpx hides (a half-sent body, the bytes before the response).

Shared by ``tests/dify/test_dify_emulator.py`` (the endpoints) and ``test_dify_emulator_faults.py``
(the injected faults), which are apart only to keep each file readable; the ``client`` fixture they
both use is in ``tests/dify/conftest.py``.
"""

from __future__ import annotations

import json
import socket

import httpx

from docify_provider.testing import DOCUMENT_APP_KEY, TEXT_APP_KEY, DifyEmulator
from helpers import TEXT_INPUTS, auth


def run_body(inputs: dict | None = None, mode: str | None = "streaming", user: str = "u1") -> dict:
    body: dict = {"inputs": TEXT_INPUTS if inputs is None else inputs, "user": user}
    if mode is not None:
        body["response_mode"] = mode
    return body


def frames(raw: bytes) -> list[bytes]:
    """Split an SSE body into frames (without the blank-line separator)."""
    parts = raw.split(b"\n\n")
    assert parts[-1] == b"", raw[-200:]
    return parts[:-1]


def events(raw: bytes) -> list[dict]:
    return [json.loads(f[len(b"data: ") :]) for f in frames(raw) if f.startswith(b"data: ")]


def stream_run(client: httpx.Client, key: str = TEXT_APP_KEY, **kwargs) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", "workflows/run", headers=auth(key), json=run_body(**kwargs)) as r:
        return r, r.read()


def upload(client: httpx.Client, name: str = "report.pdf", content: bytes = b"%PDF-1.4 data", user: str = "u1"):
    return client.post(
        "files/upload", headers=auth(DOCUMENT_APP_KEY), files={"file": (name, content)}, data={"user": user}
    )


def local(file_id: str, type_: str = "document") -> dict:
    return {"transfer_method": "local_file", "upload_file_id": file_id, "type": type_}


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


def raw_stream_request(emu: DifyEmulator, body: dict, key: str = TEXT_APP_KEY) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", emu.port))
    head = (
        f"POST /v1/workflows/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock
