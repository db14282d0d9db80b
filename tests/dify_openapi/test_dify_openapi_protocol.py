"""The user-scoped OpenAPI's sans-IO parts, no server: paths per generation, generation detection,
input_schema validation, the device-flow state machine and the error-body mapping."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from docify_provider._core.errors import AuthenticationError, BadRequestError, RateLimitedError
from docify_provider._core.retries import is_retryable
from docify_provider.dify.models import AppParameters
from docify_provider.dify_openapi import protocol
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.device import DeviceCode, DevicePoll
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAuthenticationError,
    DifyOpenAPIBadRequestError,
    DifyOpenAPIConfigError,
    DifyOpenAPIDeviceFlowError,
    DifyOpenAPIError,
    DifyOpenAPIInputError,
    DifyOpenAPIRateLimitedError,
    error_for_status,
)
from docify_provider.dify_openapi.inputs import check_inputs
from docify_provider.dify_openapi.models import AppDescription

APP = "a0000000-0000-4000-8000-000000000001"


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "mode", "path"),
    [
        ("legacy", "workflow", f"/apps/{APP}/run"),
        ("action", "chat", f"/apps/{APP}:run"),
        ("per-mode", "workflow", f"/apps/{APP}/workflow:run"),
        ("per-mode", "advanced-chat", f"/apps/{APP}/advanced-chat:run"),
        ("per-mode", "completion", f"/apps/{APP}/completion:run"),
        ("per-mode", "agent-chat", f"/apps/{APP}:run"),  # no per-mode route: the deprecated one
    ],
)
def test_run_route_per_generation_and_mode(generation: str, mode: str, path: str) -> None:
    endpoint = protocol.run_endpoint(generation, APP, mode)
    assert (endpoint.method, endpoint.path, endpoint.repeatable) == ("POST", path, False)


def test_other_routes_per_generation() -> None:
    assert protocol.describe_endpoint("legacy", APP).path == f"/apps/{APP}/describe"
    assert protocol.describe_endpoint("per-mode", APP).path == f"/apps/{APP}"
    assert protocol.stop_endpoint("legacy", APP, "t1").path == f"/apps/{APP}/tasks/t1/stop"
    assert protocol.stop_endpoint("action", APP, "t1").path == f"/apps/{APP}/tasks/t1:stop"
    assert protocol.form_endpoint("legacy", APP, "tok").path == f"/apps/{APP}/form/human_input/tok"
    assert protocol.submit_endpoint("legacy", APP, "tok").method == "POST"
    assert protocol.submit_endpoint("per-mode", APP, "tok").path == f"/apps/{APP}/human-input-forms/tok:submit"
    assert protocol.events_endpoint(APP, "r1").path == f"/apps/{APP}/tasks/r1/events"
    assert not protocol.submit_endpoint("action", APP, "tok").repeatable


def test_run_body_sends_query_only_to_chat_apps() -> None:
    wf = protocol.run_body("per-mode", "workflow", {"a": 1}, query="ignored", conversation_id="c")
    chat = protocol.run_body("per-mode", "chat", {}, query="hi", conversation_id="c")
    assert wf == {"inputs": {"a": 1}}
    assert chat == {"inputs": {}, "query": "hi", "conversation_id": "c"}
    assert json.loads(protocol.multipart_fields({"inputs": {"x": "é"}, "query": "q"})["inputs"]) == {"x": "é"}


# --- generation detection ------------------------------------------------------------------------


def test_probe_per_mode_from_the_catalog_header() -> None:
    probe = protocol.GenerationProbe()
    probe.on_version(200, {"X-Dify-Catalog": "abc"}, {"version": "1.18.0", "edition": "SELF_HOSTED"})
    assert (probe.generation, probe.version) == ("per-mode", "1.18.0")


def test_probe_falls_back_to_the_legacy_describe_after_a_404() -> None:
    probe = protocol.GenerationProbe()
    probe.on_version(200, {}, {"version": "1.14.0"})
    assert probe.generation is None
    assert probe.describe_request(APP).path == f"/apps/{APP}"
    assert probe.on_describe(404, {}) is False
    assert probe.describe_request(APP).path == f"/apps/{APP}/describe"
    assert probe.on_describe(200, {}, {"info": {}}) is True
    assert probe.generation == "legacy"


def test_probe_action_generation_without_the_header() -> None:
    probe = protocol.GenerationProbe()
    assert probe.on_describe(200, {}, {}) is True
    assert probe.generation == "action"


def test_probe_undecided_when_both_describes_404() -> None:
    probe = protocol.GenerationProbe()
    probe.on_describe(404, {})
    assert probe.on_describe(404, {}) is True
    assert probe.generation is None


# --- config --------------------------------------------------------------------------------------


def test_config_needs_a_token_and_never_shows_it() -> None:
    with pytest.raises(DifyOpenAPIConfigError, match="account token"):
        DifyOpenAPIClientConfig()
    cfg = DifyOpenAPIClientConfig(api_key="dfoa_secretsecret")
    assert "dfoa_secretsecret" not in repr(cfg)
    assert cfg.base_url.endswith("/openapi/v1")
    assert DifyOpenAPIClientConfig(login_only=True).login_only
    with pytest.raises(DifyOpenAPIConfigError, match="api_generation"):
        DifyOpenAPIClientConfig(api_key="dfoa_x", api_generation="newest")


# --- error mapping -------------------------------------------------------------------------------


def _err(status: int, body: dict[str, Any], headers: dict[str, str] | None = None, *, run: bool = False):
    endpoint = protocol.run_endpoint("per-mode", APP, "workflow") if run else protocol.ACCOUNT
    return error_for_status(status, json.dumps(body).encode(), httpx.Headers(headers or {}), endpoint)


def test_error_body_code_hint_and_details_in_the_message() -> None:
    err = _err(
        422,
        {
            "code": "invalid_param",
            "message": "Request validation failed",
            "status": 422,
            "hint": "see the schema",
            "details": [{"type": "missing", "loc": ["body", "inputs", "topic"], "msg": "Field required"}],
        },
    )
    assert isinstance(err, DifyOpenAPIBadRequestError) and isinstance(err, BadRequestError)
    assert err.code == "invalid_param" and err.permanent
    assert (
        "invalid_param" in str(err)
        and "hint: see the schema" in str(err)
        and "inputs.topic: Field required" in str(err)
    )


def test_401_says_log_in_again() -> None:
    err = _err(401, {"code": "unauthorized", "message": "invalid_bearer", "status": 401})
    assert isinstance(err, DifyOpenAPIAuthenticationError) and isinstance(err, AuthenticationError)
    assert "invalid, expired or revoked" in str(err) and "Log in again" in str(err)


def test_bearer_429_retry_after_ms_and_retry_only_for_reads() -> None:
    err = _err(429, {"error": "rate_limited", "retry_after_ms": 1500})
    assert isinstance(err, DifyOpenAPIRateLimitedError) and isinstance(err, RateLimitedError)
    assert err.retry_after == 1.5 and err.code == "rate_limited"
    assert _err(429, {"error": "rate_limited", "retry_after_ms": 1500}, {"Retry-After": "3"}).retry_after == 3
    assert is_retryable(err, protocol.ACCOUNT)
    assert not is_retryable(err, protocol.run_endpoint("per-mode", APP, "workflow"))


def test_every_decision_has_an_openapi_class() -> None:
    from docify_provider._core.errors import DECISIONS, error_class

    for decision in DECISIONS:
        cls = error_class(DifyOpenAPIError, decision)
        assert issubclass(cls, DifyOpenAPIError) and cls.__bases__[0] is decision


# --- input_schema validation ---------------------------------------------------------------------

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "inputs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topic": {"type": "string", "maxLength": 10},
                "tone": {"enum": ["neutral", "fun"]},
                "count": {"type": "number"},
                "doc": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "transfer_method": {"type": "string"},
                        "url": {"type": "string"},
                        "upload_file_id": {"type": "string"},
                    },
                },
            },
            "required": ["topic", "doc"],
        }
    },
    "required": ["inputs"],
}


def _app(mode: str = "workflow", schema: dict[str, Any] | None = SCHEMA) -> AppDescription:
    params = {
        "user_input_form": [
            {"text-input": {"variable": "topic", "label": "Topic", "required": True, "max_length": 10}},
            {"file": {"variable": "doc", "label": "Doc", "required": True, "allowed_file_types": ["document"]}},
        ],
        "system_parameters": {"file_size_limit": 15},
    }
    return AppDescription.from_api(
        {"info": {"id": APP, "name": "Writer", "mode": mode}, "parameters": params, "input_schema": schema}
    )


def test_every_problem_named_at_once(tmp_path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"png")
    with pytest.raises(DifyOpenAPIInputError) as info:
        check_inputs({"topic": "x" * 11, "tone": "angry", "count": "many", "bogus": 1, "doc": str(image)}, _app())
    problems = info.value.problems
    text = "\n".join(problems)
    assert "'bogus' is not an input of this app" in text
    assert "'topic'" in text and "too long" in text
    assert "'tone'" in text and "'count'" in text
    assert "'doc'" in text and "image file" in text  # the planner's file rule, once
    assert len(problems) == 5


def test_missing_required_reported_once_and_query_rules() -> None:
    with pytest.raises(DifyOpenAPIInputError) as info:
        check_inputs({}, _app())
    assert sorted(info.value.problems) == ["'doc' is required", "'topic' is required"]
    with pytest.raises(DifyOpenAPIInputError, match="'query' is required"):
        check_inputs({"topic": "a", "doc": "https://x.test/a.pdf"}, _app("chat"))
    with pytest.raises(DifyOpenAPIInputError, match="only for chat apps"):
        check_inputs({"topic": "a", "doc": "https://x.test/a.pdf"}, _app(), query="hi")


def test_valid_inputs_plan_files(tmp_path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    plan = check_inputs({"topic": "cats", "doc": str(pdf)}, _app())
    assert [(u.variable, u.file_name, u.file_type) for u in plan.uploads] == [("doc", "report.pdf", "document")]
    remote = check_inputs({"topic": "cats", "doc": "https://x.test/a.pdf"}, _app())
    assert remote.values["doc"] == {"transfer_method": "remote_url", "url": "https://x.test/a.pdf", "type": "document"}
    assert not remote.uploads


def test_without_parameters_files_are_read_off_the_schema(tmp_path) -> None:
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"x")
    app = AppDescription.from_api({"info": {"id": APP, "mode": "workflow"}, "input_schema": SCHEMA})
    assert app.parameters is None or not app.parameters.user_input_form
    plan = check_inputs({"topic": "a", "doc": str(pdf)}, app)
    assert [u.variable for u in plan.uploads] == ["doc"]
    assert AppParameters().user_input_form == []


# --- device flow ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _code(interval: float = 5, expires_in: float = 900) -> DeviceCode:
    code = DeviceCode.from_api(
        {
            "device_code": "dc_secret",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://c/device",
            "expires_in": expires_in,
            "interval": interval,
        },
        "difyctl",
    )
    return dataclasses.replace(code, issued_at=0.0)


def test_device_poll_pending_slow_down_then_token() -> None:
    clock = Clock()
    poll = DevicePoll(_code(), clock=clock)
    assert poll.request() == {"device_code": "dc_secret", "client_id": "difyctl"}
    assert poll.on_answer(400, b'{"error":"authorization_pending"}') is None
    assert poll.wait() == 5
    assert poll.on_answer(400, {"error": "slow_down"}) is None
    assert poll.wait() == 10  # RFC 8628: +5 s, for this and every later poll
    token = poll.on_answer(
        200,
        {
            "token": "dfoa_tok",
            "expires_at": "2026-12-16T00:00:00Z",
            "account": {"id": "u", "email": "e@x"},
            "workspaces": [{"id": "w"}],
            "default_workspace_id": "w",
        },
    )
    assert token is not None and token.token.reveal() == "dfoa_tok" and "dfoa_tok" not in repr(token)
    assert token.expires_at is not None and token.expires_at.year == 2026 and token.account["email"] == "e@x"
    assert "dc_secret" not in repr(poll.code)


@pytest.mark.parametrize("error", ["expired_token", "access_denied"])
def test_device_poll_final_errors(error: str) -> None:
    poll = DevicePoll(_code(), clock=Clock())
    with pytest.raises(DifyOpenAPIDeviceFlowError) as info:
        poll.on_answer(400, {"error": error})
    assert info.value.reason == error and info.value.permanent


def test_device_poll_pending_past_expiry_is_expired() -> None:
    clock = Clock()
    poll = DevicePoll(_code(expires_in=10), clock=clock)
    clock.now = 11
    assert poll.expired()
    with pytest.raises(DifyOpenAPIDeviceFlowError, match="expired"):
        poll.on_answer(400, {"error": "authorization_pending"})


@pytest.mark.parametrize("status", [502, 503, 504, 524])
def test_device_poll_goes_on_after_a_gateway_answer_until_the_code_expires(status: int) -> None:
    """A gateway's 5xx is no RFC 8628 answer: poll again (same interval); past expiry it ends the login."""
    clock = Clock()
    poll = DevicePoll(_code(expires_in=10), clock=clock)
    assert poll.on_answer(status, {"error": "bad_gateway"}) is None
    assert poll.wait() == 5, "no slow_down step for a gateway answer"
    clock.now = 11
    with pytest.raises(DifyOpenAPIDeviceFlowError, match="expired"):
        poll.on_answer(status, {"error": "bad_gateway"})


def test_device_poll_500_still_ends_the_login() -> None:
    with pytest.raises(DifyOpenAPIDeviceFlowError):
        DevicePoll(_code(), clock=Clock()).on_answer(500, {"error": "internal_server_error"})
