"""Executing a validated run: produced results, stored attachments, the run response body.

Shared by the blocking endpoint and the streaming endpoint (whose COMPLETE event carries the
same response object), including the run-level faults that alter results.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from docify_provider.testing.faults import Fault
from docify_provider.testing.records import StoredAttachment
from docify_provider.testing.scenarios import FileInput, Scenario
from docify_provider.testing.state import EmulatorState

PLACEHOLDER_ATTACHMENT = b"emulated attachment\n"


def now_ms() -> int:
    """Current time as integer milliseconds since the epoch (the API's timestamp unit)."""
    return int(time.time() * 1000)


@dataclass
class Run:
    """A started run and everything its final response needs."""

    scenario: Scenario
    key_fp: str
    run_id: str = field(default_factory=lambda: f"run-{uuid.uuid4()}")
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_ms: int = field(default_factory=now_ms)
    text: str | None = None
    json_result: Any = None
    attachments: list[StoredAttachment] = field(default_factory=list)
    declared_sizes: list[int] = field(default_factory=list)
    failure: str | None = None


def declared_size(size: int, fault: Fault | None) -> int:
    """The size an attachment declares: its true size, or the ``lying_file_size`` fault's lie."""
    if fault is None or fault.kind != "lying_file_size":
        return size
    if fault.factor is not None:
        return int(size * fault.factor)
    return size + int(fault.delta or 0)


def produce(
    run: Run,
    inputs: Mapping[str, Any],
    files: Mapping[str, list[FileInput]],
    fault: Fault | None,
    state: EmulatorState,
) -> None:
    """Compute the run's results (or its failure) and store its attachments for download."""
    if fault is not None and fault.kind == "failed_run":
        run.failure = fault.message or "Emulated scenario failure"
        return
    text, json_result, attachments = run.scenario.produce(inputs, files)
    attachments = list(attachments)
    if fault is not None and fault.kind == "attachment_name":
        first = attachments[0][1] if attachments else PLACEHOLDER_ATTACHMENT
        attachments[:1] = [(str(fault.name), first)]
    if fault is not None and fault.kind == "attachment_size" and not attachments:
        attachments = [("generated.bin", b"")]
    run.text, run.json_result = text, json_result
    for index, (name, content) in enumerate(attachments):
        generated = None
        declared: int | None = None
        if index == 0 and fault is not None and fault.kind == "attachment_size":
            content, generated, declared = b"", int(fault.size or 0), fault.declared
        stored = StoredAttachment(token=uuid.uuid4().hex, name=name, content=bytes(content), generated_size=generated)
        state.add_attachment(stored)
        run.attachments.append(stored)
        run.declared_sizes.append(declared_size(stored.size, fault) if declared is None else int(declared))


def download_url(download_base: str, attachment: StoredAttachment) -> str:
    """``<download_base>/<token>/<url-quoted name>``; the name is always one path segment."""
    return f"{download_base}/{attachment.token}/{quote(attachment.name, safe='')}"


def response_body(run: Run, download_base: str) -> dict[str, Any]:
    """The run response object (blocking body and the COMPLETE event's ``response``)."""
    finished = now_ms()
    failed = run.failure is not None
    return {
        "runId": run.run_id,
        "scenarioId": run.scenario.scenario_id,
        "jsonResult": None if failed else json.dumps(run.json_result, ensure_ascii=False),
        "result": run.text,
        "createAt": run.created_ms,
        "finishedAt": finished,
        "elapsedTime": finished - run.created_ms,
        "isSuccess": not failed,
        "errorMessage": run.failure,
        "costPoints": run.scenario.cost_points,
        "files": [
            {"fileUrl": download_url(download_base, a), "fileName": a.name, "fileSize": size}
            for a, size in zip(run.attachments, run.declared_sizes, strict=True)
        ],
    }
