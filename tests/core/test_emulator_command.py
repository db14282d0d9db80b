"""The emulator as a tool: ``python -m docify_provider.testing`` as a real process, and its counters.

Checked: a default port per mode (docify 8765, dify 8766, dify-openapi 8767), said in ``--help``
and the banner; a port in use (a real second process) or an address that cannot be listened on
is one line and exit status 2; ``GET /_emulator/counters`` on every mode gives what the tests read
in process; the summary printed on SIGINT/SIGTERM; ``--auto-approve`` lets a real ``airflow-dify
login`` finish with nobody at a browser.
"""

from __future__ import annotations

import errno
import json
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from docify_provider.testing import INVOICE_KEY, LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator, DocifyEmulator
from docify_provider.testing.__main__ import bind_error
from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, ACCOUNT_TOKEN, TEXT_APP_ID, DifyOpenAPIEmulator
from docify_provider.testing.samples import SAMPLE_PNG
from helpers import TEXT_INPUTS, auth

EMULATOR = [sys.executable, "-m", "docify_provider.testing"]
PROG = "python -m docify_provider.testing"
LOGIN = Path(sys.executable).parent / "airflow-dify"
DEFAULT_PORTS = {"docify": 8765, "dify": 8766, "dify-openapi": 8767}
STOP_LINE = "Stop with Ctrl-C: the counters are printed on the way out."


class Emulator:
    """One emulator process; ``banner`` is what it printed up to the stop line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*EMULATOR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.banner: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.banner.append(line.rstrip("\n"))
            if line.startswith(STOP_LINE):
                break
        self.base_url = self.banner[0].split(": ", 1)[1] if self.banner else ""
        self.netloc = self.base_url.split("/")[2] if self.base_url else ""

    def counters(self) -> dict:
        r = httpx.get(f"http://{self.netloc}/_emulator/counters", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        return r.json()

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMULATOR, *args], capture_output=True, text=True, timeout=60)


# the command line -------------------------------------------------------------------------------
def test_help_names_the_ports_pages_and_auto_approve() -> None:
    done = run("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--port PORT port to listen on; default per mode: docify 8765, dify 8766, dify-openapi 8767;" in text
    assert "python -m docify_provider.testing --mode dify-openapi # Dify account API (OpenAPI), port 8767" in text
    assert "GET /_emulator/counters every mode: the counters as JSON" in text
    assert "/device dify-openapi: the device-login page (?user_code= prefills the code)" in text
    assert (
        "--auto-approve dify-openapi: approve every device code (airflow-dify login) as soon as it is issued, as "
        f"{ACCOUNT_EMAIL}, for scripts and CI; without it, approve on the /device page"
    ) in text


@pytest.mark.parametrize("mode", DEFAULT_PORTS)
def test_each_mode_has_its_default_port(mode: str) -> None:
    """Started without --port: it listens on its mode's port, or, where that port is taken (another
    emulator of the machine), says so naming that port; either way the default is the mode's."""
    port = DEFAULT_PORTS[mode]
    emu = Emulator("--mode", mode)
    try:
        if not emu.banner:  # the port is taken
            assert emu.proc.wait(30) == 2
            assert emu.proc.stderr is not None
            assert emu.proc.stderr.read() == (
                f"{PROG}: error: port {port} on 127.0.0.1 is in use: stop the other emulator or pass --port N\n"
            )
            return
        assert emu.netloc == f"127.0.0.1:{port}"
        others = ", ".join(f"{m} {p}" for m, p in DEFAULT_PORTS.items() if m != mode)
        assert f"  port {port}: the default of --mode {mode} ({others})" in emu.banner
        assert f"  counters: http://127.0.0.1:{port}/_emulator/counters" in emu.banner
        assert emu.counters()["mode"] == mode
        rc, _, err = emu.stop()
        assert rc == 0 and not err
    finally:
        emu.kill()


def test_a_port_in_use_is_one_line_and_status_2() -> None:
    first = Emulator("--mode", "dify-openapi", "--port", "0")
    try:
        port = int(first.netloc.rsplit(":", 1)[1])
        assert not any("the default of" in line for line in first.banner), "--port given: no default-port line"
        assert (
            f"  device login page: http://{first.netloc}/device (approve the codes of `airflow-dify login` there)"
            in (first.banner)
        )
        assert first.banner[-1] == STOP_LINE
        second = run("--mode", "dify-openapi", "--port", str(port))
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr == (
            f"{PROG}: error: port {port} on 127.0.0.1 is in use: stop the other emulator or pass --port N\n"
        )
        assert first.counters()["mode"] == "dify-openapi", "the first one serves on"
    finally:
        first.kill()


def test_other_listen_errors_and_bad_options_are_one_line() -> None:
    cases = {
        ("--host", "no-such-host.invalid", "--port", "0"): (
            "--host no-such-host.invalid: unknown host name; pass an address such as 127.0.0.1"
        ),
        # TEST-NET-1 (RFC 5737): never an address of this machine
        ("--host", "192.0.2.1", "--port", "0"): (
            "--host 192.0.2.1 is not an address of this machine: pass 127.0.0.1 (or 0.0.0.0: every interface)"
        ),
        ("--port", "70000"): "argument --port: 70000 is not a port (0-65535; 0 picks a free one)",
        ("--port", "eighty"): "argument --port: not a port number: 'eighty'",
        ("--mode", "dify", "--auto-approve"): (
            "--auto-approve goes with --mode dify-openapi (the device login of Dify's account API)"
        ),
    }
    for args, message in cases.items():
        done = run(*args)
        assert done.returncode == 2 and done.stdout == "", (args, done.stderr)
        assert done.stderr.endswith(f"{PROG}: error: {message}\n"), (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_bind_errors_without_a_lookup() -> None:
    """The two errors this machine cannot be made to give (root may bind port 80)."""
    denied = OSError(errno.EACCES, "Permission denied")
    assert bind_error(denied, "127.0.0.1", 80) == (
        "port 80 on 127.0.0.1 needs privileges this user lacks: pass --port N (1024 or above)"
    )
    other = OSError(errno.EMFILE, "Too many open files")
    assert bind_error(other, "127.0.0.1", 8765) == "cannot listen on 127.0.0.1 port 8765: Too many open files"


# counters over HTTP -----------------------------------------------------------------------------
def test_docify_counters_over_http_and_on_exit() -> None:
    emu = Emulator("--port", "0", "--ping-interval", "0")
    try:
        headers = auth(INVOICE_KEY)
        with httpx.Client(base_url=emu.base_url + "/", timeout=10) as c:
            up = c.post("v1/file/upload", headers=headers, files={"file": ("a.png", SAMPLE_PNG)}, data={"user": "u"})
            image = {"uploadFileOid": up.json()["uploadFileOid"], "fileType": "IMAGE"}
            body = {"user": "u", "inputs": {"invoice_image": {"files": [image]}}}
            done = c.post("v1/scenario/run", headers=headers, json=body).json()
            assert httpx.get(done["files"][0]["fileUrl"]).status_code == 200
            assert c.post("v1/scenario/run", headers=headers, json={"user": "u"}).status_code == 400
        expected = {
            "mode": "docify",
            "runs_started": 1,
            "runs_completed": 1,
            "uploads": 1,
            "downloads": 1,
            "requests": 4,
            "runs_started_by_scenario": {"OCR_INVOICE": 1},
        }
        assert emu.counters() == expected
        assert emu.counters() == expected, "reading the counters is not counted"
        rc, out, err = emu.stop(signal.SIGTERM)
        assert rc == 0 and not err
        assert out == (
            "Docify emulator stopped: 1 run started (billed), 1 completed, 1 upload, 1 download, 4 API requests.\n"
            "  runs by scenario: OCR_INVOICE 1\n"
        )
    finally:
        emu.kill()


def test_dify_counters_over_http_and_on_exit() -> None:
    emu = Emulator("--mode", "dify", "--port", "0")
    try:
        with httpx.Client(base_url=emu.base_url + "/", headers=auth(TEXT_APP_KEY), timeout=10) as c:
            for topic in ("tea", "coffee"):
                body = {"inputs": {**TEXT_INPUTS, "topic": topic}, "user": "u", "response_mode": "blocking"}
                assert c.post("workflows/run", json=body).json()["data"]["status"] == "succeeded"
        counters = emu.counters()
        assert counters == {
            "mode": "dify",
            "runs_started": 2,
            "runs_completed": 2,
            "uploads": 0,
            "downloads": 0,
            "requests": 2,
            "stop_requests": 0,
            "events_requests": 0,
            "runs_turned_away": 0,
            "runs_started_by_app": {"Text Writer": 2},
            "runs_by_status": {"succeeded": 2},
        }
        rc, out, _ = emu.stop()
        assert rc == 0
        assert out == (
            "Dify emulator stopped: 2 runs started (billed), 2 completed, 0 uploads, 0 downloads, 2 API requests.\n"
            "  runs by app: Text Writer 2\n"
            "  runs by status: succeeded 2\n"
        )
    finally:
        emu.kill()


def test_dify_cap_and_runs_page() -> None:
    """``--max-active-requests``: a second run over the cap is answered 429 and not started; the runs
    page lists each run's inputs (a script counts runs per ``label``) and the 429s."""
    emu = Emulator("--mode", "dify", "--port", "0", "--max-active-requests", "1")
    try:
        with httpx.Client(base_url=emu.base_url + "/", headers=auth(LONG_APP_KEY), timeout=10) as c:
            body = {"inputs": {"seconds": 1, "label": "doc-0"}, "user": "u", "response_mode": "streaming"}
            with c.stream("POST", "workflows/run", json=body) as first:
                assert first.status_code == 200
                second = c.post("workflows/run", json={**body, "inputs": {"seconds": 1, "label": "doc-1"}})
                assert second.status_code == 429 and second.json()["code"] == "too_many_requests"
                first.read()
        page = httpx.get(f"http://{emu.netloc}/_emulator/runs", timeout=10).json()
        assert [run["inputs"]["label"] for run in page["runs"]] == ["doc-0"]
        assert page["runs"][0]["app"] == "Long Job" and page["runs_turned_away"] == 1
        assert emu.counters()["runs_turned_away"] == 1 and emu.counters()["runs_started"] == 1
        assert httpx.post(f"http://{emu.netloc}/_emulator/runs", timeout=10).status_code == 405
    finally:
        emu.kill()


def test_every_mode_serves_what_the_tests_read_in_process() -> None:
    """In process too: the page's numbers are the emulator's own counters, not the page's."""
    with DocifyEmulator() as docify, DifyEmulator() as dify, DifyOpenAPIEmulator() as openapi:
        with httpx.Client(base_url=openapi.base_url + "/", headers=auth(ACCOUNT_TOKEN), timeout=10) as c:
            with c.stream("POST", f"apps/{TEXT_APP_ID}/workflow:run", json={"inputs": TEXT_INPUTS}) as r:
                r.read()
        openapi.wait_run_finished(openapi.runs[0].id)
        for emu in (docify, dify, openapi):
            served = httpx.get(f"http://{emu.netloc}/_emulator/counters").json()
            assert served == emu.counters()
            assert served["runs_started"] == emu.runs_started() and served["runs_completed"] == emu.runs_completed()
            assert served["requests"] == len(emu.requests) and served["uploads"] == len(emu.uploads)
        assert openapi.counters()["runs_started_by_app"] == {"Text Writer": 1}
        assert httpx.post(f"http://{docify.netloc}/_emulator/counters").status_code == 405
        # not under the API prefix
        assert httpx.get(f"{docify.base_url}/_emulator/counters").status_code == 404


# --auto-approve: a real login with nobody at a browser -------------------------------------------
@pytest.mark.slow
def test_auto_approve_lets_the_login_finish_alone() -> None:
    emu = Emulator("--mode", "dify-openapi", "--port", "0", "--auto-approve")
    try:
        assert (
            f"  device login page: http://{emu.netloc}/device (not needed: --auto-approve approves every code at "
            f"once, as {ACCOUNT_EMAIL})"
        ) in emu.banner
        errors: list[str] = []
        login = subprocess.Popen(
            [str(LOGIN), "login", "--host", emu.base_url, "--no-browser", "--print-env", "--conn-id", "dify_ci"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reader = threading.Thread(target=lambda: errors.append(login.stderr.read() if login.stderr else ""))
        reader.start()
        out = login.stdout.read() if login.stdout else ""
        assert login.wait(60) == 0, errors
        reader.join(10)
        assert f"To log in, open http://{emu.netloc}/device and enter the code: " in errors[0]
        name, _, value = out.strip().partition("=")
        assert name == "AIRFLOW_CONN_DIFY_CI"
        token = json.loads(shlex.split(value)[0])["password"]
        account = httpx.get(emu.base_url + "/account", headers=auth(token), timeout=10)
        assert account.status_code == 200 and account.json()["account"]["email"] == ACCOUNT_EMAIL
        assert emu.counters()["device_logins"] == {
            "codes_issued": 1,
            "waiting": 0,
            "approved": 1,
            "denied": 0,
            "tokens_handed_out": 1,
            "expired": 0,
        }
        rc, out, _ = emu.stop()
        assert rc == 0
        assert "  device logins: 1 code issued, 1 approved, 0 denied, 1 token handed out\n" in out
    finally:
        emu.kill()
