"""A Dify human-input form as a person reads it (``docify_provider.dify.forms``): labels, kinds, pointers, times.

Pure functions over form definitions in the shapes Dify serves (A7's ``GET /form/human_input``;
newer servers' ``select`` with ``option_source``; older servers' ``text-input``). The Airflow side
(the params and the page a person sees) is tested in ``tests/airflow/test_dify_hitl.py`` and the
browser test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from docify_provider.dify.forms import (
    FormField,
    body_with_pointers,
    expiry_words,
    fields_of,
    label_of,
    readable_duration,
    readable_time,
    readable_when,
)

NOW = datetime(2026, 12, 7, 12, 5, tzinfo=timezone.utc)

DEFINITION = {
    "form_content": "Outline for budget. Comment: {{#$output.comment#}} Priority: {{#$output.priority#}}",
    "inputs": [
        {"type": "paragraph", "output_variable_name": "comment", "default": {"type": "constant", "value": ""}},
        {
            "type": "select",
            "output_variable_name": "priority",
            "option_source": {"type": "constant", "value": ["low", "normal", "high"]},
        },
        {"type": "text_input", "output_variable_name": "reviewer_name"},
        {"type": "text-input", "output_variable_name": "dueDate"},
        {"type": "file", "output_variable_name": "attachment"},
    ],
    "resolved_default_values": {"comment": "Looks fine", "priority": "", "reviewer_name": "", "dueDate": None},
    "user_actions": [{"id": "approve", "title": "Approve"}],
}


def test_fields_get_a_label_a_kind_and_a_required_flag_from_dify_types():
    comment, priority, name, due, attachment = fields_of(DEFINITION)
    assert comment == FormField("comment", "Comment", "paragraph", "Looks fine", (), required=False)
    # A select needs one of its options: required, nothing preselected when Dify resolved none.
    assert priority == FormField("priority", "Priority", "select", None, ("low", "normal", "high"), required=True)
    # Older and newer spellings of a one-line text; no label in Dify: the variable made readable.
    assert (name.label, name.kind, name.required) == ("Reviewer name", "text", False)
    assert (due.label, due.kind, due.default) == ("Due date", "text", "")
    assert attachment.kind == "file" and not attachment.answerable_in_airflow


def test_a_label_or_required_flag_given_by_the_server_wins():
    (field,) = fields_of(
        {"inputs": [{"type": "paragraph", "output_variable_name": "c", "label": "Your notes", "required": True}]}
    )
    assert (field.label, field.required) == ("Your notes", True)


def test_a_select_whose_options_dify_did_not_resolve_is_asked_as_text():
    source = {"type": "variable", "selector": ["node", "choices"]}
    (field,) = fields_of({"inputs": [{"type": "select", "output_variable_name": "pick", "option_source": source}]})
    assert (field.kind, field.options, field.required) == ("text", (), False)


def test_placeholders_become_pointers_to_the_fields_below():
    fields = fields_of(DEFINITION)
    body = body_with_pointers(DEFINITION["form_content"], fields)
    assert body == (
        "Outline for budget. Comment: (see the field *Comment* below) Priority: (see the field *Priority* below)"
    )
    assert (
        body_with_pointers("Attach {{#$output.attachment#}}", fields) == "Attach (the file *Attachment*, given in Dify)"
    )
    # An older build's ``$outputs`` and a placeholder naming no field still read as text.
    assert body_with_pointers("{{#$outputs.comment#}} / {{#$output.other_note#}}", fields) == (
        "(see the field *Comment* below) / (the answer to *Other note*)"
    )


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("comment", "Comment"),
        ("due_date", "Due date"),
        ("dueDate", "Due date"),
        ("SKU", "SKU"),
        ("order_ID", "Order ID"),
        ("_", "_"),
    ],
)
def test_label_of(name, label):
    assert label_of(name) == label


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "less than a minute"),
        (59, "less than a minute"),
        (60, "1 min"),
        (3600, "1 h"),
        (3900, "1 h 5 min"),
        (86400, "1 d"),
        (86400 + 7200 + 59, "1 d 2 h"),
        (-300, "5 min"),
    ],
)
def test_readable_duration_rounds_down_to_what_a_person_needs(seconds, words):
    assert readable_duration(seconds) == words


def test_times_are_written_for_people():
    in_two_hours = NOW + timedelta(hours=2)
    assert readable_time(int(in_two_hours.timestamp())) == "7 Dec 2026, 14:05 UTC"
    assert readable_time("2026-12-07T14:05:00+00:00") == "7 Dec 2026, 14:05 UTC"
    assert readable_time("2026-12-07T15:05:00+01:00") == "7 Dec 2026, 14:05 UTC"
    assert readable_when(in_two_hours.isoformat(), NOW) == "7 Dec 2026, 14:05 UTC (in 2 h)"
    assert readable_when("2026-12-07T11:00:00Z", NOW) == "7 Dec 2026, 11:00 UTC (1 h 5 min ago)"
    assert expiry_words(in_two_hours, NOW) == "expires 7 Dec 2026, 14:05 UTC (in 2 h)"
    # Never "None" where a value is missing.
    assert readable_time(None) is None and readable_when("", NOW) is None and readable_time("soon") is None
    assert expiry_words(None) == "no expiry given"
