"""The OpenAPI emulator's device-login page (``/device``) and ``auto_approve``, over real sockets.

``airflow-dify login`` prints the device code's ``verification_uri``; on the emulator that is
``http://HOST:PORT/device``, a plain HTML form whose buttons post back to it and answer with a
result page. Each page the user can meet is checked here on its words; the same flow in headless
Chromium, driven by the real login command, is ``test_device_page_browser.py``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator

import httpx
import pytest

from docify_provider.dify_openapi.device import DeviceCode
from docify_provider.testing import DifyEmulator, Fault
from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, DifyOpenAPIEmulator

pytestmark = pytest.mark.emulator(device_poll_interval=0.05)

LABEL = "airflow@ci-host/<dify_openapi_default>"
APPROVED = "<h1>Approved: return to your terminal</h1>"
DENIED = "<h1>Denied</h1>"
UNKNOWN = "<h1>Unknown or expired code</h1>"


@pytest.fixture
def api(emu: DifyOpenAPIEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url + "/", timeout=10) as c:
        yield c


def new_code(api: httpx.Client, label: str = LABEL) -> dict:
    r = api.post("oauth/device/code", json={"client_id": "difyctl", "device_label": label})
    assert r.status_code == 200, r.text
    return r.json()


def poll(api: httpx.Client, code: dict) -> httpx.Response:
    time.sleep(0.06)  # past the emulator's slow_down gap
    return api.post("oauth/device/token", json={"device_code": code["device_code"], "client_id": "difyctl"})


def press(emu: DifyOpenAPIEmulator, user_code: str, action: str) -> httpx.Response:
    """What the browser sends for a click on Approve or Deny: the form, url-encoded."""
    return httpx.post(emu.device_url, data={"user_code": user_code, "action": action}, timeout=10)


def page_text(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def test_the_printed_uri_is_the_page_and_it_shows_what_is_approved(emu: DifyOpenAPIEmulator, api: httpx.Client) -> None:
    code = new_code(api)
    assert code["verification_uri"] == emu.device_url == f"http://{emu.netloc}/device"
    # typed as a person might copy it: lower case, no dash
    r = httpx.get(emu.device_url, params={"user_code": code["user_code"].lower().replace("-", "")})
    assert r.status_code == 200
    text = page_text(r)
    assert "<h1>Authorize a device</h1>" in text
    assert "<p>Enter the code your terminal shows (<code>airflow-dify login</code> prints it), then approve" in text
    assert f'name="user_code" value="{code["user_code"]}"' in text
    assert (
        f"<p>Asking: <strong>{html.escape(LABEL)}</strong> (client <code>difyctl</code>); the code expires in 15 min.</p>"
        in text
    )
    assert (
        "<p>Approving gives the device that shows this code an account token of <strong>Emu Lator</strong> "
        f"&lt;{ACCOUNT_EMAIL}&gt; for Dify's account API, valid 14 days: it can list and run the apps of "
        "<strong>Emulator Workspace</strong> and <strong>Second Workspace</strong> as this account. "
        "<code>airflow-dify logout</code> revokes it.</p>"
    ) in text
    assert '<button type="submit" name="action" value="approve">Approve</button>' in text
    assert '<button type="submit" name="action" value="deny">Deny</button>' in text
    assert "it approves as the emulator's built-in account, without signing in." in text
    assert LABEL not in text, "the client-chosen label is escaped"
    assert "None" not in text and "<script" not in text and "http" not in text, "nothing fetched from elsewhere"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_the_form_says_when_the_code_is_unknown_or_answered(emu: DifyOpenAPIEmulator, api: httpx.Client) -> None:
    empty = page_text(httpx.get(emu.device_url))
    assert 'value=""' in empty and "Asking:" not in empty and 'role="alert"' not in empty
    unknown = page_text(httpx.get(emu.device_url, params={"user_code": "zzzz-zzzz"}))
    assert (
        '<p class="notice" role="alert">The code ZZZZ-ZZZZ is unknown or has expired: check it against your '
        "terminal, or start a new login.</p>"
    ) in unknown
    code = new_code(api)
    emu.approve(code["user_code"])
    answered = page_text(httpx.get(emu.device_url, params={"user_code": code["user_code"]}))
    assert (
        f'role="alert">The code {code["user_code"]} was already answered: start a new login for a new code.</p>'
    ) in answered


def test_approve_then_the_token_poll_gets_the_token(emu: DifyOpenAPIEmulator, api: httpx.Client) -> None:
    code = new_code(api)
    assert poll(api, code).json() == {"error": "authorization_pending"}
    r = press(emu, code["user_code"], "approve")
    assert r.status_code == 200
    text = page_text(r)
    assert APPROVED in text and "<title>Approved - Dify OpenAPI emulator</title>" in text
    assert (
        f"<p><strong>{html.escape(LABEL)}</strong> now has an account token of <strong>Emu Lator</strong> "
        f"&lt;{ACCOUNT_EMAIL}&gt;. The login waiting in your terminal receives it at its next poll and finishes; "
        "you can close this page.</p>"
    ) in text
    granted = poll(api, code)
    assert granted.status_code == 200 and granted.json()["account"]["email"] == ACCOUNT_EMAIL
    again = press(emu, code["user_code"], "deny")
    assert again.status_code == 409
    assert "<h1>Code already approved</h1>" in again.text
    assert (
        f"<p>The code <code>{code['user_code']}</code> was already approved; each code is answered once." in again.text
    )


def test_deny_then_the_token_poll_is_refused(emu: DifyOpenAPIEmulator, api: httpx.Client) -> None:
    code = new_code(api, "laptop")
    r = press(emu, code["user_code"].replace("-", " "), "deny")
    assert r.status_code == 200
    text = page_text(r)
    assert DENIED in text
    assert (
        "<p><strong>laptop</strong> gets no token. The login in your terminal stops with &ldquo;The login was "
        "denied&rdquo;; start a new login to try again.</p>"
    ) in text
    assert poll(api, code).json() == {"error": "access_denied"}
    again = press(emu, code["user_code"], "approve")
    assert again.status_code == 409 and "<h1>Code already denied</h1>" in again.text


def test_unknown_expired_empty_and_wrong_requests() -> None:
    with DifyOpenAPIEmulator(device_code_ttl=0.3) as emu, httpx.Client(base_url=emu.base_url + "/") as api:
        unknown = press(emu, "ABCD-EFGH", "approve")
        assert unknown.status_code == 404 and UNKNOWN in unknown.text
        assert (
            "<p>No login waits for the code <code>ABCD-EFGH</code>: check it against the one your terminal shows, "
            "or start a new login (a code lasts 0.3 s).</p>"
        ) in unknown.text
        assert '<a href="/device">Enter another code</a>' in unknown.text
        code = new_code(api)
        time.sleep(0.4)
        expired = press(emu, code["user_code"], "approve")
        assert expired.status_code == 404 and UNKNOWN in expired.text
        assert "is unknown or has expired" in httpx.get(emu.device_url, params={"user_code": code["user_code"]}).text

        empty = press(emu, "  ", "approve")
        assert empty.status_code == 400
        assert 'role="alert">Enter the code your terminal shows (like ABCD-EFGH).</p>' in empty.text
        nothing = press(emu, "ABCD-EFGH", "")
        assert nothing.status_code == 400 and 'role="alert">Press Approve or Deny.</p>' in nothing.text
        put = httpx.put(emu.device_url)
        assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, POST"
        assert "The device page answers GET (the form) and POST (its Approve and Deny buttons)." in put.text


def test_the_page_is_no_api_request(emu: DifyOpenAPIEmulator, api: httpx.Client) -> None:
    """No fault reaches it and it is not recorded: it is the console, not the OpenAPI."""
    code = new_code(api)
    emu.inject(Fault("*", "status", status=503))
    assert httpx.get(emu.device_url).status_code == 200
    assert press(emu, code["user_code"], "approve").status_code == 200
    assert api.get("_health").status_code == 503
    assert [r.path for r in emu.requests] == ["/openapi/v1/oauth/device/code", "/openapi/v1/_health"]


@pytest.mark.parametrize("options", [{"paths": "legacy"}, {"openapi_enabled": False}], ids=["legacy", "openapi-off"])
def test_served_at_the_root_whatever_the_api(options: dict) -> None:
    with DifyOpenAPIEmulator(**options) as emu:
        assert httpx.get(emu.device_url).status_code == 200
    with DifyEmulator() as service_api:  # the Service API has no device login: no page
        assert httpx.get(f"http://{service_api.netloc}/device").status_code == 404


def test_public_host_moves_the_printed_uri() -> None:
    with DifyOpenAPIEmulator(public_host="dify.test:8767") as emu, httpx.Client(base_url=emu.base_url + "/") as c:
        code = new_code(c)
        assert code["verification_uri"] == emu.device_url == "http://dify.test:8767/device"


def test_auto_approve_hands_the_token_to_the_first_poll() -> None:
    with DifyOpenAPIEmulator(auto_approve=True, device_poll_interval=0.05) as emu:
        assert emu.auto_approve
        with httpx.Client(base_url=emu.base_url + "/") as c:
            code = new_code(c)
            granted = poll(c, code)
        assert granted.status_code == 200 and granted.json()["account"]["email"] == ACCOUNT_EMAIL
        logins = emu.counters()["device_logins"]
        assert logins == {
            "codes_issued": 1,
            "waiting": 0,
            "approved": 1,
            "denied": 0,
            "tokens_handed_out": 1,
            "expired": 0,
        }
    assert not DifyOpenAPIEmulator().auto_approve


def test_complete_uri_is_the_servers_when_it_sends_one() -> None:
    """RFC 8628 3.2: ``verification_uri_complete`` is optional; Dify sends none, and its console page
    (like the emulator's) takes ``?user_code=``."""
    base = {"device_code": "dc_x", "user_code": "ABCD-EFGH", "verification_uri": "https://dify.test/device"}
    built = DeviceCode.from_api(base, "difyctl")
    assert built.verification_uri_complete == "https://dify.test/device?user_code=ABCD-EFGH"
    given = DeviceCode.from_api({**base, "verification_uri_complete": "https://dify.test/d/ABCDEFGH"}, "difyctl")
    assert given.verification_uri_complete == "https://dify.test/d/ABCDEFGH"
    junk = DeviceCode.from_api({**base, "verification_uri_complete": "javascript:alert(1)"}, "difyctl")
    assert junk.verification_uri_complete == "https://dify.test/device?user_code=ABCD-EFGH"
