"""plan_inputs: every problem in one DifyInputError, uploads planned, wire inputs built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docify_provider.dify.errors import DifyInputError
from docify_provider.dify.inputs import plan_inputs
from docify_provider.dify.models import AppParameters, UploadedFile

LOCAL_REMOTE = ["local_file", "remote_url"]


def params(*variables: dict[str, Any], **system: Any) -> AppParameters:
    limits = {"file_size_limit": 15, "image_file_size_limit": 10, "workflow_file_upload_limit": 10, **system}
    return AppParameters.from_api({"user_input_form": [{v["type"]: v} for v in variables], "system_parameters": limits})


APP = params(
    {"type": "text-input", "variable": "topic", "label": "Topic", "required": True, "max_length": 5},
    {"type": "paragraph", "variable": "body", "required": False},
    {"type": "select", "variable": "tone", "options": ["a", "b"]},
    {"type": "number", "variable": "n"},
    {"type": "checkbox", "variable": "flag"},
    {"type": "json_object", "variable": "cfg"},
    {
        "type": "file",
        "variable": "doc",
        "allowed_file_types": ["document"],
        "allowed_file_upload_methods": LOCAL_REMOTE,
    },
    {
        "type": "file-list",
        "variable": "pics",
        "max_length": 2,
        "allowed_file_types": ["image"],
        "allowed_file_upload_methods": ["local_file"],
    },
    {"type": "file", "variable": "any", "allowed_file_types": ["custom"], "allowed_file_extensions": [".bin"]},
)


def problems(inputs: dict[str, Any], app: AppParameters = APP) -> list[str]:
    with pytest.raises(DifyInputError) as info:
        plan_inputs(inputs, app)
    return info.value.problems


def test_valid_scalars_pass_through() -> None:
    plan = plan_inputs({"topic": "tea", "tone": "a", "n": "2.5", "flag": "true", "cfg": '{"k": 1}'}, APP)
    assert plan.uploads == []
    assert plan.build() == {"topic": "tea", "tone": "a", "n": "2.5", "flag": True, "cfg": {"k": 1}}


def test_every_problem_at_once() -> None:
    found = problems({"tone": "c", "n": "x", "flag": 1, "cfg": "[1]", "body": 3, "extra": 1, "doc": [1, 2]})
    text = "\n".join(found)
    assert len(found) == 8, text
    for part in (
        "'topic' (Topic) is required",
        "one of ['a', 'b']",
        "'n' must be a number",
        "true or false",
        "JSON object",
        "'body' must be a string",
        "'extra' is not an input",
        "takes one file",
    ):
        assert part in text


def test_max_length_in_characters() -> None:
    assert problems({"topic": "café!!"})[0].startswith("'topic' is 6 characters")
    plan_inputs({"topic": "cafés"}, APP)


@pytest.mark.parametrize("value", [True, float("nan"), "inf"])
def test_bad_numbers(value: Any) -> None:
    assert problems({"topic": "x", "n": value})


def test_local_files_are_planned_and_built(tmp_path: Path) -> None:
    doc = tmp_path / "a.pdf"
    doc.write_bytes(b"%PDF")
    pic = tmp_path / "p.png"
    pic.write_bytes(b"png")
    plan = plan_inputs(
        {"topic": "x", "doc": doc, "pics": [str(pic), b"raw"]},
        params(
            *[v.raw for v in APP.user_input_form if v.variable != "pics"],
            {"type": "file-list", "variable": "pics", "allowed_file_types": ["image", "custom"]},
        ),
    )
    assert [(u.variable, u.index, u.file_type, u.size) for u in plan.uploads] == [
        ("doc", None, "document", 4),
        ("pics", 0, "image", 3),
        ("pics", 1, "custom", 3),
    ]
    uploaded = [UploadedFile.from_api({"id": f"u{i}", "name": u.file_name}) for i, u in enumerate(plan.uploads)]
    wire = plan.build(uploaded)
    assert wire["doc"] == {"transfer_method": "local_file", "upload_file_id": "u0", "type": "document"}
    assert [p["upload_file_id"] for p in wire["pics"]] == ["u1", "u2"]
    with pytest.raises(DifyInputError):
        plan.build(uploaded[:1])


def test_file_kinds_as_is() -> None:
    up = UploadedFile.from_api({"id": "u9", "name": "d.txt", "extension": "txt"})
    plan = plan_inputs(
        {"topic": "x", "doc": up, "pics": [{"transfer_method": "local_file", "upload_file_id": "u1"}]}, APP
    )
    assert plan.build()["doc"] == {"transfer_method": "local_file", "upload_file_id": "u9", "type": "document"}
    assert plan.build()["pics"][0]["type"] == "custom"
    xcom = plan_inputs({"topic": "x", "doc": up.as_dict()}, APP).build()
    assert xcom["doc"]["upload_file_id"] == "u9"
    remote = plan_inputs({"topic": "x", "doc": "https://example.com/files/report.pdf"}, APP).build()
    assert remote["doc"] == {
        "transfer_method": "remote_url",
        "url": "https://example.com/files/report.pdf",
        "type": "document",
    }
    bare = plan_inputs({"topic": "x", "doc": "https://example.com/download?id=3"}, APP).build()
    assert bare["doc"]["type"] == "document"


def test_file_rules(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    img.write_bytes(b"png")
    text = "\n".join(
        problems(
            {
                "topic": "x",
                "doc": img,  # an image where documents are wanted
                "pics": ["https://e.com/a.png", str(img), str(img)],  # remote not allowed; 3 > max_length 2
                "any": "https://e.com/a.exe",  # custom with a wrong extension
            }
        )
    )
    assert "is a image file; 'doc' takes document" in text
    assert "remote_url is not allowed" in text and "3 files, over its max_length 2" in text
    assert "extension '.exe'" in text


def test_missing_and_storage_paths(tmp_path: Path) -> None:
    text = "\n".join(problems({"topic": "x", "doc": tmp_path / "none.pdf", "any": "s3://bucket/a.bin"}))
    assert "no such file" in text and "storage URL" in text


def test_size_limits_per_type(tmp_path: Path) -> None:
    app = params(*[v.raw for v in APP.user_input_form], file_size_limit=0.000001, image_file_size_limit=0.001)
    doc = tmp_path / "d.pdf"
    doc.write_bytes(b"x" * 10)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    text = "\n".join(problems({"topic": "x", "doc": doc, "pics": [empty]}, app))
    assert "over Dify's 1e-06 MB limit for document files" in text and "is empty" in text
    small = tmp_path / "s.png"
    small.write_bytes(b"x" * 10)
    plan_inputs({"topic": "x", "pics": [small]}, app)


def test_workflow_file_upload_limit(tmp_path: Path) -> None:
    app = params({"type": "file-list", "variable": "l"}, workflow_file_upload_limit=1)
    assert "workflow_file_upload_limit 1" in problems({"l": ["https://e/a.pdf", "https://e/b.pdf"]}, app)[0]


def test_bad_mapping() -> None:
    assert "transfer_method" in problems({"topic": "x", "doc": {"url": "x"}})[0]


def test_optional_empty_values_are_dropped() -> None:
    assert plan_inputs({"topic": "x", "body": "", "pics": [], "doc": None}, APP).build() == {"topic": "x", "body": ""}
