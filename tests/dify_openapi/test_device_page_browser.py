"""The device login as a person does it: the real ``airflow-dify login`` prints a URL and a code,
headless Chromium opens that URL on the Dify OpenAPI emulator, and a click answers it.

Approve: the printed complete URI (``?user_code=``) shows the code already filled in and which
device asks; a click on Approve ends the login in the terminal, which writes a connection whose
token works. Deny: the printed plain URI, the code typed in, a click on Deny; the login ends with
"The login was denied". Playwright drives Debian's Chromium (``/usr/bin/chromium``, from
``scripts/services.sh``; no browser download), as ``tests/deployment/test_dify_hitl_browser.py``
does; no Airflow deployment is needed (the login writes to the test's SQLite metadata DB).
Screenshots go to ``out/screenshots/device-page.png`` (the form), ``device-approved.png`` and
``device-denied.png``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, DifyOpenAPIEmulator
from helpers import CHROMIUM, CHROMIUM_ARGS, NEEDS_BROWSER

SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
SCRIPT = Path(sys.executable).parent / "airflow-dify"
PRINTED = re.compile(r"To log in, open (\S+) and enter the code: ([A-Z0-9]{4}-[A-Z0-9]{4})")
COMPLETE = re.compile(r"^\s+\(or open (\S+)\)", re.MULTILINE)
DENIED = "The login was denied in the Dify console; start a new login to try again."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    *NEEDS_BROWSER,
]


@pytest.fixture
def env(airflow_env: Path, tmp_path: Path) -> dict[str, str]:
    """The login's environment: the test's Airflow home and DB, bytecode cached outside the tree."""
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run scripts/bootstrap.sh (pyproject.toml declares airflow-dify)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
    return env


class Login:
    """``airflow-dify login`` running; ``printed()`` is what it told the person to open."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(SCRIPT), "login", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self.shown = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if COMPLETE.match(line):
                self.shown.set()
        self.shown.set()

    def printed(self) -> tuple[str, str, str]:
        """(verification URI, user code, complete URI) as printed."""
        assert self.shown.wait(120), "the login printed no URL"
        text = "".join(self.lines)
        found, complete = PRINTED.search(text), COMPLETE.search(text)
        assert found is not None and complete is not None, text
        return found.group(1), found.group(2), complete.group(1)

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        rc = self.proc.wait(120)
        self._reader.join(30)
        return rc, out, "".join(self.lines)


def stored(conn_id: str) -> Any:
    """The connection as the login wrote it to the metadata DB."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is not None:
            session.expunge(conn)
        return conn


def test_approve_in_the_browser_stores_a_working_connection(env: dict[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from docify_provider.dify_openapi.client import DifyOpenAPIClient
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with DifyOpenAPIEmulator(device_poll_interval=0.5) as emu, sync_playwright() as pw:
        login = Login(env, "--host", emu.base_url, "--no-browser", "--conn-id", "dify_browser")
        uri, code, complete = login.printed()
        assert uri == f"http://{emu.netloc}/device" and complete == f"{uri}?user_code={code}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 860})
            page.set_default_timeout(30_000)
            page.goto(complete)
            expect(page.get_by_role("heading", name="Authorize a device")).to_be_visible()
            expect(page.get_by_label("Code")).to_have_value(code)
            asking = (
                f"Asking: airflow@{socket.gethostname()}/dify_browser (client difyctl); the code expires in 15 min."
            )
            expect(page.locator("p", has_text=asking)).to_be_visible()
            expect(page.locator("p", has_text=f"an account token of Emu Lator <{ACCOUNT_EMAIL}>")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "device-page.png"), full_page=True)
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("heading", name="Approved: return to your terminal")).to_be_visible()
            expect(page.locator("p", has_text="The login waiting in your terminal receives it")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "device-approved.png"), full_page=True)
        finally:
            browser.close()
        rc, out, err = login.finish()
        assert rc == 0, err
        assert f"Logged in to Dify as {ACCOUNT_EMAIL}. Created connection 'dify_browser' ({emu.base_url})." in out
        conn = stored("dify_browser")
        assert conn is not None and conn.conn_type == "dify-openapi" and conn.host == emu.base_url
        with DifyOpenAPIClient(DifyOpenAPIHook.config_from_connection(conn)) as client:
            assert client.get_account().email == ACCOUNT_EMAIL, "the stored token works"
        assert emu.counters()["device_logins"]["tokens_handed_out"] == 1
        assert conn.password not in out + err


def test_deny_in_the_browser_ends_the_login(env: dict[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with DifyOpenAPIEmulator(device_poll_interval=0.5) as emu, sync_playwright() as pw:
        login = Login(env, "--host", emu.base_url, "--no-browser", "--print-env", "--conn-id", "dify_no")
        uri, code, _ = login.printed()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.set_default_timeout(30_000)
            page.goto(uri)  # the plain printed URL: the person types the code shown in the terminal
            field = page.get_by_label("Code")
            expect(field).to_have_value("")
            field.fill(code)
            page.get_by_role("button", name="Deny").click()
            expect(page.get_by_role("heading", name="Denied")).to_be_visible()
            expect(page.locator("p", has_text="gets no token. The login in your terminal stops")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "device-denied.png"), full_page=True)
        finally:
            browser.close()
        rc, out, err = login.finish()
        assert emu.counters()["device_logins"]["denied"] == 1
    assert rc == 1 and out == ""
    assert f"airflow-dify login: error: Dify device login: {DENIED}" in err
    assert "Traceback" not in err
