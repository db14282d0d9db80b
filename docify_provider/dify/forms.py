"""A Dify human-input form as a person reads it: its fields, its text and its expiry (issue 19 item 7).

Dify's form definition (``GET /form/human_input/{token}``, A7; the node's ``inputs``) names each
field only by its output variable and a type: ``paragraph`` (several lines), ``text_input``
(``text-input`` on some servers; one line), ``select`` (newer servers: ``option_source``, a constant
list of options or a variable), ``file`` and ``file-list``. It carries no label and no required flag:
Dify's own page places each field where its ``{{#$output.<name>#}}`` placeholder stands in the text,
and it refuses a submission that leaves a field out ("Missing required inputs") but takes empty text.

Airflow shows the text above and the fields below it, so here each field gets a label (its name made
readable), a kind the Airflow form can render (a text area for a paragraph, a drop-down for a select),
and each placeholder becomes a pointer to the field it stands for. Times are written for people:
``7 Dec 2026, 14:05 UTC`` plus how far away that is. Wire layer: no Airflow here (``hitl`` makes the
Airflow params out of :class:`FormField`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from docify_provider.dify.parsing import epoch_to_datetime

__all__ = [
    "PLACEHOLDER",
    "FormField",
    "body_with_pointers",
    "expiry_words",
    "fields_of",
    "label_of",
    "readable_duration",
    "readable_time",
    "readable_when",
]

#: A form-text placeholder for a field's answer (``$output``; ``$outputs`` in some older builds).
PLACEHOLDER = re.compile(r"\{\{#\$outputs?\.([A-Za-z_][A-Za-z0-9_]*)#\}\}")

#: Dify input types -> the kinds a person is shown (``file`` kinds cannot be answered in Airflow).
_KINDS = {
    "paragraph": "paragraph",
    "text_input": "text",
    "text-input": "text",
    "select": "select",
    "number": "number",
    "file": "file",
    "file-list": "file",
    "file_list": "file",
}


@dataclass(frozen=True)
class FormField:
    """One field of a form: its output variable, the label a person reads, how it is answered."""

    name: str
    label: str
    #: ``paragraph`` (several lines), ``text`` (one line), ``select``, ``number`` or ``file``.
    kind: str
    default: Any = ""
    options: tuple[str, ...] = field(default=())
    #: Whether the answer may not be left empty: a select needs one of its options; Dify takes empty text.
    required: bool = False

    @property
    def answerable_in_airflow(self) -> bool:
        """Files cannot be uploaded through Airflow's form: such a field is answered in Dify."""
        return self.kind != "file"


def label_of(name: str) -> str:
    """``due_date`` -> ``Due date``: the output variable as a person reads it (Dify gives no label)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ").split()
    if not words:
        return name
    text = " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in words)  # acronyms kept
    return text[:1].upper() + text[1:]


def _options(item: Mapping[str, Any]) -> tuple[str, ...]:
    """A select's options: ``option_source`` with a constant list (newer Dify) or a plain ``options`` list."""
    source = item.get("option_source")
    values: Any = None
    if isinstance(source, Mapping) and source.get("type", "constant") == "constant":
        values = source.get("value")
    if values is None:
        values = item.get("options")
    if not isinstance(values, list):
        return ()
    out = []
    for value in values:
        label = value.get("value", value.get("label")) if isinstance(value, Mapping) else value
        if label is not None and str(label) not in out:
            out.append(str(label))
    return tuple(out)


def fields_of(definition: Mapping[str, Any]) -> list[FormField]:
    """The form's fields, in its order, from a form definition (or a ``human_input_required`` data)."""
    defaults = definition.get("resolved_default_values")
    defaults = defaults if isinstance(defaults, Mapping) else {}
    out: list[FormField] = []
    for item in definition.get("inputs") or []:
        if not isinstance(item, Mapping) or not item.get("output_variable_name"):
            continue
        name = str(item["output_variable_name"])
        kind = _KINDS.get(str(item.get("type") or ""), "text")
        options = _options(item) if kind == "select" else ()
        if kind == "select" and not options:
            kind = "text"  # options from a variable Dify did not resolve for us: typed as text
        default = defaults.get(name, "")
        default = "" if default is None else default
        if kind == "select" and default not in options:
            default = None  # nothing chosen yet
        label = item.get("label") or item.get("title")
        required = item.get("required")
        out.append(
            FormField(
                name=name,
                label=str(label) if label else label_of(name),
                kind=kind,
                default=default,
                options=options,
                required=bool(required) if isinstance(required, bool) else kind == "select",
            )
        )
    return out


def body_with_pointers(content: str, fields: Iterable[FormField]) -> str:
    """The form text with each ``{{#$output.x#}}`` replaced by a pointer to the field *x* below it.

    In Dify the field sits where its placeholder stands; in Airflow the fields come after the text,
    so a bare variable name in the sentence would read as part of it.
    """
    by_name = {f.name: f for f in fields}

    def pointer(match: re.Match[str]) -> str:
        found = by_name.get(match.group(1))
        if found is None:
            return f"(the answer to *{label_of(match.group(1))}*)"
        if not found.answerable_in_airflow:
            return f"(the file *{found.label}*, given in Dify)"
        return f"(see the field *{found.label}* below)"

    return PLACEHOLDER.sub(pointer, content)


def readable_duration(seconds: float) -> str:
    """``2 h``, ``1 h 5 min``, ``3 d 4 h``, ``12 min``, ``less than a minute``: rounded for people."""
    seconds = abs(seconds)
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def readable_time(when: Any) -> str | None:
    """``7 Dec 2026, 14:05 UTC`` for an ISO time or epoch seconds; None when there is no time."""
    moment = epoch_to_datetime(when) if not isinstance(when, datetime) else when
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def readable_when(when: Any, now: datetime | None = None) -> str | None:
    """``7 Dec 2026, 14:05 UTC (in 2 h)`` or ``... (5 min ago)``: the time and how far it is from now."""
    moment = epoch_to_datetime(when) if not isinstance(when, datetime) else when
    text = readable_time(moment)
    if moment is None or text is None:
        return None
    left = (moment - (now or datetime.now(tz=timezone.utc))).total_seconds()
    distance = readable_duration(left)
    return f"{text} ({'in ' + distance if left >= 0 else distance + ' ago'})"


def expiry_words(expires_at: Any, now: datetime | None = None) -> str:
    """``expires 7 Dec 2026, 14:05 UTC (in 2 h)``, or ``no expiry given``: for log lines."""
    when = readable_when(expires_at, now)
    return f"expires {when}" if when else "no expiry given"
