"""Models, input normalisation/validation and errors: pure functions, no network.

Payloads are the examples of the Docify API reference (docs/…/docify-openapi), so a change that
stops parsing what Docify documents fails here first.
"""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone

import pytest

from docify_provider.docify import (
    ClientConfig,
    DocifyAuthenticationError,
    DocifyConfigError,
    DocifyError,
    DocifyFileError,
    DocifyInputError,
    DocifyOutcomeUnknownError,
    DocifyProtocolError,
    DocifyRateLimitedError,
    DocifyRunFailedError,
    DocifyRunTimeoutError,
    DocifyStreamIncompleteError,
    DocifyTimeoutError,
    DocifyTransportError,
    EventType,
    FileType,
    ResultFile,
    RunResult,
    ScenarioInfo,
    StreamEvent,
    UploadedFile,
    normalize_inputs,
    safe_file_name,
    validate_inputs,
)
from docify_provider.docify.models import parse_json_result

# --- the API reference's examples ------------------------------------------------------------

INFO_EXAMPLE = """
{
  "scenarioId": "1001",
  "productId": "123456",
  "scenarioCode": "OCR_INVOICE",
  "scenarioName": "Invoice Recognition",
  "description": "Intelligent recognition of invoice content",
  "parameters": [
    {
      "type": "FILE",
      "label": "Invoice Image",
      "variable": "invoice_image",
      "required": true,
      "maxLength": 0,
      "description": "Please upload an invoice image file"
    }
  ]
}
"""

# As printed in the reference, except for its one typo (a stray backslash before the closing
# quote of jsonResult, which makes the printed example invalid JSON). jsonResult stays escaped
# twice, as documented.
RUN_EXAMPLE = r"""
{
"runId": "run-123456",
"scenarioId": "1001",
"jsonResult": "{\\\"invoice_number\\\":\\\"INV-2024-001\\\",\\\"amount\\\":1000.00}",
"result": "Invoice Number: INV-2024-001, Amount: 1000.00 CNY",
"createAt": 1640995200000,
"finishedAt": 1640995205000,
"elapsedTime": 5000,
"isSuccess": true,
"errorMessage": null,
"costPoints": 10.5,
"files": [
{
"fileUrl": "https://dev.docify.jp/docify/download/processed_invoice.pdf",
"fileName": "processed_invoice.pdf",
"fileSize": 2048000
}
]
}
"""

UPLOAD_EXAMPLE = """
{
  "uploadFileOid": "550e8400-e29b-41d4-a716-446655440000",
  "fileName": "invoice.jpg",
  "fileSize": 1024000,
  "fileType": "IMAGE"
}
"""


def _event(type_: str, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": type_,
        "sessionId": "session-uuid",
        "content": None,
        "response": None,
        "error": None,
        "chunkId": "chunk-uuid",
        "timestamp": 1640995200000,
    }
    body.update(fields)
    return body


EPOCH_2022 = datetime(2022, 1, 1, tzinfo=timezone.utc)


def test_scenario_info_example() -> None:
    info = ScenarioInfo.from_api(json.loads(INFO_EXAMPLE))
    assert (info.scenario_id, info.scenario_code, info.scenario_name) == ("1001", "OCR_INVOICE", "Invoice Recognition")
    assert info.product_id == "123456"
    assert info.description == "Intelligent recognition of invoice content"
    [param] = info.parameters
    assert param.type == "FILE" and param.variable == "invoice_image" and param.label == "Invoice Image"
    assert param.required is True and param.takes_files
    # maxLength 0 is Docify's "no limit".
    assert param.max_length is None
    assert info.parameter("invoice_image") is param and info.parameter("nope") is None
    assert info.raw["productId"] == "123456"


def test_scenario_info_limits_and_select_options() -> None:
    info = ScenarioInfo.from_api(
        {
            "scenarioId": "2001",
            "scenarioCode": "TEXT_SUMMARY",
            "parameters": [
                {"type": "textarea", "variable": "text", "required": True, "maxLength": 5000},
                {"type": "SELECT", "variable": "language", "options": ["en", "ja", "fr"]},
                {
                    "type": "SELECT",
                    "variable": "tone",
                    "options": [{"label": "Formal", "value": "formal"}, {"label": "x"}],
                },
                {"type": "TEXT", "variable": "title", "maxLength": "100"},
            ],
        }
    )
    text, language, tone, title = info.parameters
    assert text.type == "TEXTAREA" and text.max_length == 5000 and not text.takes_files
    assert language.options == ("en", "ja", "fr") and language.max_length is None
    assert tone.options == ("formal", "x")
    assert title.max_length == 100 and title.options is None


def test_run_result_example_with_escaped_json_result() -> None:
    result = RunResult.from_api(json.loads(RUN_EXAMPLE))
    assert result.json_result == {"invoice_number": "INV-2024-001", "amount": 1000.0}
    assert result.run_id == "run-123456" and result.scenario_id == "1001"
    assert result.result == "Invoice Number: INV-2024-001, Amount: 1000.00 CNY"
    assert result.is_success is True and result.error_message is None
    assert result.created_at == EPOCH_2022
    assert result.created_at is not None and result.created_at.tzinfo is not None
    assert result.finished_at is not None and (result.finished_at - result.created_at).total_seconds() == 5
    assert result.elapsed_ms == 5000 and result.cost_points == 10.5
    assert result.files == (
        ResultFile(
            file_url="https://dev.docify.jp/docify/download/processed_invoice.pdf",
            file_name="processed_invoice.pdf",
            file_size=2048000,
        ),
    )
    # Nothing the server sent is dropped: the raw payload rebuilds the same result.
    assert RunResult.from_api(result.raw) == result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"invoice_number": "INV-1", "amount": 12.5}', {"invoice_number": "INV-1", "amount": 12.5}),
        (r"{\"a\":[1,2]}", {"a": [1, 2]}),  # escaped once too often, as in the API reference
        (json.dumps(json.dumps({"a": 1})), {"a": 1}),  # JSON encoded twice
        ("[1, 2]", [1, 2]),
        ('"plain"', "plain"),
        ("Invoice Number: INV-1", "Invoice Number: INV-1"),  # not JSON: kept as the raw string
        ('{"truncated": ', '{"truncated": '),
        (r"{\"truncated\": ", r"{\"truncated\": "),
        (None, None),
        ({"already": "parsed"}, {"already": "parsed"}),
    ],
)
def test_json_result_parsed_or_kept_raw(raw: object, expected: object) -> None:
    assert parse_json_result(raw) == expected
    assert RunResult.from_api({"runId": "r", "isSuccess": True, "jsonResult": raw}).json_result == expected


def test_run_result_tolerates_missing_and_odd_fields() -> None:
    result = RunResult.from_api({"runId": "r1", "isSuccess": False, "errorMessage": "boom", "costPoints": "n/a"})
    assert result.is_success is False and result.error_message == "boom"
    assert result.cost_points is None and result.files == () and result.created_at is None
    assert RunResult.from_api({"createdAt": 1640995200000}).created_at == EPOCH_2022
    with pytest.raises(DocifyProtocolError, match="files"):
        RunResult.from_api({"files": "nope"})
    with pytest.raises(DocifyProtocolError, match="JSON object"):
        RunResult.from_api(["not", "an", "object"])


def test_stream_event_examples_in_order() -> None:
    complete = _event("COMPLETE", response=json.loads(RUN_EXAMPLE), timestamp=1640995205000)
    payloads = [
        _event("START"),
        _event("PREPARE_START", content="Preparing to execute task..."),
        _event("PREPARE_END", content="Preparation complete"),
        _event("TEXT", content="Recognizing invoice content..."),
        complete,
    ]
    events = [StreamEvent.from_api(p) for p in payloads]
    assert [e.type for e in events] == ["START", "PREPARE_START", "PREPARE_END", "TEXT", "COMPLETE"]
    assert all(e.session_id == "session-uuid" and e.chunk_id == "chunk-uuid" for e in events)
    assert events[3].content == "Recognizing invoice content..."
    assert events[0].timestamp == EPOCH_2022 and events[0].timestamp.tzinfo is not None
    assert not any(e.is_terminal for e in events[:4]) and events[4].is_terminal
    assert events[4].response is not None
    assert events[4].response.json_result == {"invoice_number": "INV-2024-001", "amount": 1000.0}


def test_stream_error_and_unknown_events() -> None:
    error = StreamEvent.from_api(_event("ERROR", error="File format not supported"))
    assert error.type == EventType.ERROR.value and error.is_terminal
    assert error.error == "File format not supported" and error.response is None
    unknown = StreamEvent.from_api(_event("heartbeat_v2", content=42))
    assert unknown.type == "HEARTBEAT_V2" and unknown.content == "42" and not unknown.is_terminal
    # No "type" in the data: the SSE event name stands in.
    named = StreamEvent.from_api({"sessionId": "s", "content": "x"}, sse_event="text")
    assert named.type == "TEXT"
    with pytest.raises(DocifyProtocolError):
        StreamEvent.from_api("not an object")


def test_upload_example() -> None:
    uploaded = UploadedFile.from_api(json.loads(UPLOAD_EXAMPLE))
    assert uploaded.upload_file_oid == "550e8400-e29b-41d4-a716-446655440000"
    assert (uploaded.file_name, uploaded.file_size, uploaded.file_type) == ("invoice.jpg", 1024000, "IMAGE")
    assert uploaded.to_input() == {"uploadFileOid": "550e8400-e29b-41d4-a716-446655440000", "fileType": "IMAGE"}
    assert uploaded.as_dict()["upload_file_oid"] == uploaded.upload_file_oid
    with pytest.raises(DocifyProtocolError, match="uploadFileOid"):
        UploadedFile.from_api({"fileName": "x.jpg"})


# --- inputs: shorthand -> wire format ----------------------------------------------------------

UPLOADED = UploadedFile("oid-1", "scan.png", 10, "IMAGE")


def test_normalize_shorthand() -> None:
    wire = normalize_inputs(
        {
            "query": "text",
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "upload": UPLOADED,
            "xcom": {"upload_file_oid": "oid-2", "file_name": "a.pdf", "file_size": 1, "file_type": "document"},
            "remote": {"url": "https://files.example.com/scan.PNG"},
            "remote_doc": {"url": "https://files.example.com/report"},
            "typed": {"url": "https://files.example.com/scan", "fileType": FileType.IMAGE},
            "many": [UPLOADED, {"uploadFileOid": "oid-3", "fileType": "DOCUMENT"}],
            "wire": {"text": "as is"},
        }
    )
    assert wire == {
        "query": {"text": "text"},
        "count": {"text": "3"},
        "ratio": {"text": "0.5"},
        "flag": {"text": "true"},
        "upload": {"files": [{"uploadFileOid": "oid-1", "fileType": "IMAGE"}]},
        "xcom": {"files": [{"uploadFileOid": "oid-2", "fileType": "DOCUMENT"}]},
        "remote": {"files": [{"url": "https://files.example.com/scan.PNG", "fileType": "IMAGE"}]},
        "remote_doc": {"files": [{"url": "https://files.example.com/report", "fileType": "DOCUMENT"}]},
        "typed": {"files": [{"url": "https://files.example.com/scan", "fileType": "IMAGE"}]},
        "many": {
            "files": [
                {"uploadFileOid": "oid-1", "fileType": "IMAGE"},
                {"uploadFileOid": "oid-3", "fileType": "DOCUMENT"},
            ]
        },
        "wire": {"text": "as is"},
    }
    assert normalize_inputs(None) == {}


def test_normalize_reports_every_bad_value_at_once() -> None:
    with pytest.raises(DocifyInputError) as caught:
        normalize_inputs(
            {
                "a": object(),
                "b": {"url": "ftp://example.com/x.pdf"},
                "c": [{"uploadFileOid": "x", "url": "https://example.com/y.pdf"}],
                "d": {"uploadFileOid": "x", "fileType": "VIDEO"},
            }
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert "inputs['a']" in problems[0] and "unsupported value of type object" in problems[0]
    assert "inputs['b']" in problems[1] and "http(s)" in problems[1]
    assert "inputs['c'][0]" in problems[2] and "exactly one of 'uploadFileOid' or 'url'" in problems[2]
    assert "inputs['d']" in problems[3] and "IMAGE or DOCUMENT" in problems[3]
    with pytest.raises(DocifyInputError, match="mapping"):
        normalize_inputs(["text"])  # type: ignore[arg-type]


# --- inputs: validated against the scenario ---------------------------------------------------

SUMMARY = ScenarioInfo.from_api(
    {
        "scenarioId": "2001",
        "scenarioCode": "TEXT_SUMMARY",
        "parameters": [
            {"type": "TEXTAREA", "label": "Text", "variable": "text", "required": True, "maxLength": 5000},
            {"type": "TEXT", "label": "Title", "variable": "title", "required": False, "maxLength": 100},
            {
                "type": "SELECT",
                "label": "Language",
                "variable": "language",
                "required": True,
                "maxLength": 0,
                "options": ["en", "ja", "fr"],
            },
        ],
    }
)
INVOICE = ScenarioInfo.from_api(json.loads(INFO_EXAMPLE))
BUNDLE = ScenarioInfo.from_api(
    {
        "scenarioId": "3001",
        "scenarioCode": "DOC_BUNDLE",
        "parameters": [
            {"type": "FILELIST", "variable": "documents", "required": True, "maxLength": 0},
            {"type": "TEXT", "variable": "note", "required": False, "maxLength": 0},
        ],
    }
)
DOC = {"uploadFileOid": "oid", "fileType": "DOCUMENT"}


def _problems(info: ScenarioInfo, inputs: dict[str, object]) -> list[str]:
    with pytest.raises(DocifyInputError) as caught:
        validate_inputs(info, normalize_inputs(inputs))
    assert str(len(caught.value.problems)) in str(caught.value)
    return caught.value.problems


def test_valid_inputs_pass() -> None:
    validate_inputs(SUMMARY, normalize_inputs({"text": "x" * 5000, "title": "t" * 100, "language": "ja"}))
    validate_inputs(INVOICE, normalize_inputs({"invoice_image": UPLOADED}))
    validate_inputs(BUNDLE, normalize_inputs({"documents": [DOC, DOC, DOC], "note": "n" * 10_000}))  # 0 = no limit
    validate_inputs(BUNDLE, normalize_inputs({"documents": DOC}))


def test_required_missing() -> None:
    [problem] = _problems(SUMMARY, {"text": "hello"})
    assert "inputs['language']" in problem and "required" in problem
    [problem] = _problems(SUMMARY, {"text": "", "language": "en"})
    assert "inputs['text']" in problem and "required" in problem
    [problem] = _problems(INVOICE, {})
    assert "inputs['invoice_image']" in problem and "required file is missing" in problem


def test_max_length() -> None:
    [problem] = _problems(SUMMARY, {"text": "x" * 5001, "language": "en"})
    assert "inputs['text']" in problem and "5001 characters" in problem and "maximum is 5000" in problem


def test_select_options() -> None:
    [problem] = _problems(SUMMARY, {"text": "hi", "language": "de"})
    assert "inputs['language']" in problem and "'de'" in problem and "['en', 'ja', 'fr']" in problem


def test_file_takes_exactly_one() -> None:
    [problem] = _problems(INVOICE, {"invoice_image": [UPLOADED, UPLOADED]})
    assert "inputs['invoice_image']" in problem and "exactly one file, got 2" in problem
    [problem] = _problems(INVOICE, {"invoice_image": {"text": "a path?"}})
    assert "takes files, not text" in problem


def test_filelist_takes_one_or_more() -> None:
    [problem] = _problems(BUNDLE, {"documents": []})
    assert "inputs['documents']" in problem and "required file is missing" in problem
    problem, *_ = _problems(SUMMARY, {"text": [DOC], "language": "en"})
    assert "inputs['text']" in problem and "takes text, not files" in problem


def test_unknown_names_with_did_you_mean() -> None:
    [problem] = _problems(SUMMARY, {"text": "hi", "language": "en", "langauge": "en"})
    assert "inputs['langauge']" in problem and "did you mean 'language'?" in problem
    [problem] = _problems(INVOICE, {"invoice_image": UPLOADED, "zzz": "1"})
    assert "no such parameter" in problem and "['invoice_image']" in problem


def test_one_error_lists_every_problem() -> None:
    problems = _problems(SUMMARY, {"text": "x" * 6000, "title": "t" * 101, "language": "klingon", "txet": "x"})
    assert len(problems) == 4
    joined = "\n".join(problems)
    for needle in ("inputs['txet']", "inputs['text']", "inputs['title']", "inputs['language']"):
        assert needle in joined


# --- errors -----------------------------------------------------------------------------------

SECRET = "sk-live-never-print-me"

ERRORS: list[DocifyError] = [
    DocifyError("plain"),
    DocifyConfigError("bad config"),
    DocifyInputError(["one", "two"], endpoint="POST /v1/scenario/run"),
    DocifyFileError(["'big.png': too large"]),
    DocifyAuthenticationError("refused", status_code=401, endpoint="GET /v1/scenario/info", server_message="no"),
    DocifyRateLimitedError("slow down", status_code=429, endpoint="GET /v1/scenario/info", retry_after=3.0),
    DocifyTransportError("refused", endpoint="POST /v1/scenario/run", request_sent=False),
    DocifyOutcomeUnknownError(
        "cut", endpoint="POST /v1/scenario/run/streaming", session_id="s1", events_seen=["START"]
    ),
    DocifyStreamIncompleteError("ended", session_id="s2", events_seen=["START", "TEXT"]),
    DocifyRunTimeoutError("idle", endpoint="POST /v1/scenario/run/streaming", session_id="s3", events_seen=["START"]),
    DocifyRunFailedError("failed", run_id="r1", session_id="s4", error="boom", result={"isSuccess": False}),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_round_trip(error: DocifyError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.__dict__ == error.__dict__


def test_error_attributes_and_rendering() -> None:
    err = ERRORS[4]
    assert str(err) == "refused [GET /v1/scenario/info, HTTP 401]"
    assert isinstance(ERRORS[2], ValueError) and ERRORS[2].problems == ["one", "two"]
    timeout = ERRORS[9]
    # An idle run stream is both a timeout and an outcome-unknown error, and never "not sent".
    assert isinstance(timeout, DocifyTimeoutError) and isinstance(timeout, DocifyOutcomeUnknownError)
    assert timeout.request_sent is True and timeout.session_id == "s3"


def test_config_never_shows_the_key() -> None:
    config = ClientConfig(api_key=SECRET)
    assert SECRET not in repr(config) and SECRET not in str(config)
    with pytest.raises(DocifyConfigError) as caught:
        ClientConfig(api_key=SECRET, base_url="http://docify.example.com/docify")
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.__dict__)
    assert "docify.example.com" in str(caught.value) and "allow_insecure_http" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"api_key": ""}, "No Docify API key"),
        ({"api_key": "  "}, "No Docify API key"),
        ({"api_key": "k", "base_url": "ftp://docify.example.com"}, "base_url must be an http(s) URL"),
        ({"api_key": "k", "base_url": "http://docify.example.com"}, "Refusing plain http://"),
        ({"api_key": "k", "idle_timeout": 0}, "idle_timeout must be a positive number"),
        ({"api_key": "k", "max_retries": -1}, "max_retries must be >= 0"),
    ],
)
def test_config_refuses_unusable_settings(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(DocifyConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        ClientConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "base_url",
    ["https://docify.example.com/docify", "http://127.0.0.1:8080/docify", "http://localhost:1/x", "http://[::1]:2/"],
)
def test_config_accepts_https_and_loopback_http(base_url: str) -> None:
    assert ClientConfig(api_key="k", base_url=base_url).base_url == base_url


def test_config_plain_http_allowed_when_opted_in() -> None:
    config = ClientConfig(api_key="k", base_url="http://docify.internal/docify", allow_insecure_http=True)
    assert config.host == "docify.internal"
    assert config.is_trusted_host("http://docify.internal/docify/download/x.csv")
    assert not config.is_trusted_host("http://elsewhere.internal/x.csv")


def test_trusted_hosts() -> None:
    config = ClientConfig(api_key="k", base_url="https://console.docify.jp/docify", trusted_hosts=("files.docify.jp",))
    assert config.is_trusted_host("https://console.docify.jp/docify/download/a.pdf")
    assert config.is_trusted_host("https://FILES.docify.jp/a.pdf")
    assert not config.is_trusted_host("https://evil.example.com/a.pdf")
    assert not config.is_trusted_host("http://files.docify.jp/a.pdf")  # never over plain http
    assert not config.is_trusted_host("/relative/a.pdf")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.csv", "report.csv"),
        ("../../etc/passwd", "passwd"),
        ("/abs/evil.csv", "evil.csv"),
        ("C:\\Windows\\evil.csv", "evil.csv"),
        ("a\x00b.csv", "a_b.csv"),
        ("..", "attachment"),
        ("", "attachment"),
        ("what?*.csv", "what_.csv"),
    ],
)
def test_safe_file_name(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected


def test_safe_file_name_limits_length_and_keeps_extension() -> None:
    safe = safe_file_name("é" * 300 + ".csv")
    assert safe.endswith(".csv") and len(safe.encode()) <= 200
