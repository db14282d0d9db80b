"""Scenarios the emulator can run, with deterministic results.

A Docify API key is bound to one scenario; the scenario defines the input parameters the
server validates and what a run produces. Results here are pure functions of the inputs
(file hashes, names, text), so tests can assert exact values and detect a client that sends
the wrong file or mixes up variables.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: One produced attachment: (file name, content).
Attachment = tuple[str, bytes]
#: What a scenario run produces: (result text, JSON result object, attachments).
Produced = tuple[str, Any, list[Attachment]]


@dataclass(frozen=True)
class FileInput:
    """A file given to a run, resolved by the server from ``uploadFileOid`` or ``url``.

    For URL inputs the emulator does not fetch anything: ``sha256`` is the hash of the URL
    and ``size`` is 0, which keeps results deterministic.
    """

    name: str
    sha256: str
    size: int
    file_type: str
    upload_file_oid: str | None = None
    url: str | None = None


ProduceFn = Callable[[Mapping[str, Any], Mapping[str, list[FileInput]]], Produced]


@dataclass
class Scenario:
    """A scenario served by the emulator.

    ``parameters`` are the API's parameter dicts (``type``, ``label``, ``variable``,
    ``required``, ``maxLength``, ``description`` and ``options`` for SELECT); they are
    returned by ``GET /v1/scenario/info`` and drive server-side input validation.
    ``produce(inputs, files)`` receives the raw ``inputs`` object of the request and the
    resolved files per variable. ``text_chunks`` become the TEXT events of a streamed run.
    ``latency`` (seconds) is the processing time of every run.
    """

    scenario_id: str
    code: str
    name: str
    description: str
    parameters: list[dict[str, Any]]
    produce: ProduceFn
    cost_points: float = 1.0
    latency: float = 0.0
    text_chunks: list[str] = field(default_factory=lambda: ["Processing..."])
    product_id: str = "123456"

    def info(self) -> dict[str, Any]:
        """The ``GET /v1/scenario/info`` response body."""
        return {
            "scenarioId": self.scenario_id,
            "productId": self.product_id,
            "scenarioCode": self.code,
            "scenarioName": self.name,
            "description": self.description,
            "parameters": [dict(p) for p in self.parameters],
        }

    def parameter(self, variable: str) -> dict[str, Any] | None:
        """The parameter dict for ``variable``, or None when the scenario has no such input."""
        return next((p for p in self.parameters if p.get("variable") == variable), None)


def _param(
    type_: str,
    variable: str,
    label: str,
    *,
    required: bool,
    max_length: int = 0,
    description: str = "",
    options: list[str] | None = None,
) -> dict[str, Any]:
    param: dict[str, Any] = {
        "type": type_,
        "label": label,
        "variable": variable,
        "required": required,
        "maxLength": max_length,
        "description": description,
    }
    if options is not None:
        param["options"] = list(options)
    return param


def _text(inputs: Mapping[str, Any], variable: str) -> str:
    value = inputs.get(variable)
    text = value.get("text") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else ""


def _stem(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return stem or "file"


def _produce_invoice(inputs: Mapping[str, Any], files: Mapping[str, list[FileInput]]) -> Produced:
    file = files["invoice_image"][0]
    digest = file.sha256
    stem = _stem(file.name)
    fields = {
        "invoice_number": "INV-" + digest[:8].upper(),
        "amount": int(digest[:6], 16) % 100000 / 100,
        "currency": "JPY",
        "vendor": re.sub(r"[_\-\s]+", " ", stem).strip().title() or "Unknown",
        "source_file": file.name,
    }
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["field", "value"])
    writer.writerows([k, v] for k, v in fields.items())
    text = f"Invoice Number: {fields['invoice_number']}, Amount: {fields['amount']:.2f} JPY, Vendor: {fields['vendor']}"
    return text, fields, [(f"{stem}_extracted.csv", buf.getvalue().encode("utf-8"))]


def _first_sentence(text: str) -> str:
    match = re.search("[.!?\u3002\uff01\uff1f]", text)
    sentence = text[: match.end()] if match else text
    sentence = sentence.strip()
    return sentence if len(sentence) <= 80 else text.strip()[:80]


def _produce_summary(inputs: Mapping[str, Any], files: Mapping[str, list[FileInput]]) -> Produced:
    text = _text(inputs, "text")
    title = _text(inputs, "title") or None
    summary = _first_sentence(text)
    result = {
        "summary": summary,
        "word_count": len(text.split()),
        "language": _text(inputs, "language"),
        "title": title,
    }
    return summary, result, []


def _produce_bundle(inputs: Mapping[str, Any], files: Mapping[str, list[FileInput]]) -> Produced:
    names = [f.name for f in files.get("documents", [])]
    note = _text(inputs, "note")
    text = f"Bundled {len(names)} documents" + (f" ({note})" if note else "")
    return text, {"documents": names, "count": len(names)}, []


def invoice_scenario() -> Scenario:
    """OCR_INVOICE: one required FILE ``invoice_image``; produces ``<stem>_extracted.csv``."""
    return Scenario(
        scenario_id="1001",
        code="OCR_INVOICE",
        name="Invoice Recognition",
        description="Intelligent recognition of invoice content",
        parameters=[
            _param(
                "FILE",
                "invoice_image",
                "Invoice Image",
                required=True,
                description="Please upload an invoice image file",
            )
        ],
        produce=_produce_invoice,
        cost_points=10.5,
        latency=0.05,
        text_chunks=["Recognizing invoice content...", "Extracting fields...", "Checking totals..."],
    )


def summary_scenario() -> Scenario:
    """TEXT_SUMMARY: ``text`` (TEXTAREA, required, max 5000), ``title``, ``language`` (SELECT)."""
    return Scenario(
        scenario_id="2001",
        code="TEXT_SUMMARY",
        name="Text Summary",
        description="Summarizes a text",
        parameters=[
            _param("TEXTAREA", "text", "Text", required=True, max_length=5000, description="Text to summarize"),
            _param("TEXT", "title", "Title", required=False, max_length=100, description="Optional title"),
            _param(
                "SELECT",
                "language",
                "Language",
                required=True,
                description="Language of the summary",
                options=["en", "ja", "fr"],
            ),
        ],
        produce=_produce_summary,
        cost_points=2,
        latency=0.02,
        text_chunks=["Reading text...", "Summarizing..."],
    )


def bundle_scenario() -> Scenario:
    """DOC_BUNDLE: ``documents`` (FILELIST, required) and ``note`` (TEXT, optional, max 200)."""
    return Scenario(
        scenario_id="3001",
        code="DOC_BUNDLE",
        name="Document Bundle",
        description="Bundles several documents",
        parameters=[
            _param("FILELIST", "documents", "Documents", required=True, description="Documents to bundle"),
            _param("TEXT", "note", "Note", required=False, max_length=200, description="Optional note"),
        ],
        produce=_produce_bundle,
        cost_points=5,
        latency=0.02,
        text_chunks=["Collecting documents...", "Bundling..."],
    )


def builtin_scenarios() -> dict[str, Scenario]:
    """Fresh instances of the built-in scenarios keyed by code (safe to mutate per emulator)."""
    return {s.code: s for s in (invoice_scenario(), summary_scenario(), bundle_scenario())}
