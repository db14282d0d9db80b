"""``airflow-dify login|status|sessions|logout``: the console script as a real subprocess against
the Dify OpenAPI emulator on 127.0.0.1 and a real Airflow metadata DB (SQLite, ``airflow_env``).

The test plays the user: it reads the user code the command prints, approves (or denies) it in
the emulator's console while the command polls, then reads the connection back from the DB.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, airflow_env  # noqa: F401 - fixture
from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, SECOND_WORKSPACE_ID, DifyOpenAPIEmulator

# Generous: every command starts Airflow (about 3 s on an idle machine, far more under load).
pytestmark = pytest.mark.timeout(300)

BIN = Path(sys.executable).parent
SCRIPT = BIN / "airflow-dify"
USER_CODE = re.compile(r"enter the code: ([A-Z0-9]{4}-[A-Z0-9]{4})")


#: The commands' environment: the test's Airflow home and DB, and bytecode cached outside the tree.
ENV: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _script(airflow_env: Path, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: F811
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run scripts/bootstrap.sh (pyproject.toml declares airflow-dify)")
    # Each command imports Airflow; with PYTHONDONTWRITEBYTECODE every one of them would compile it
    # from source again (about 2.5 s of each command's 4 s). The cache lives in a temporary folder.
    ENV.clear()
    ENV.update({k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    ENV["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))


class Command:
    """One ``airflow-dify`` run in the background; ``code`` is set once it printed the user code."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=ENV
        )
        self.code: str | None = None
        self.seen_code = threading.Event()
        self._err: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)
            match = USER_CODE.search(line)
            if match and self.code is None:
                self.code = match.group(1)
                self.seen_code.set()

    def user_code(self, timeout: float = 120) -> str:
        assert self.seen_code.wait(timeout), f"no user code printed: {''.join(self._err)}"
        assert self.code is not None
        return self.code

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc, out, "".join(self._err)


def cli(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=ENV)
    return done.returncode, done.stdout, done.stderr


def stored(conn_id: str) -> Any:
    """The connection as written to the metadata DB (None if absent)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is None:
            return None
        session.expunge(conn)
        return conn


def approved_login(emu: DifyOpenAPIEmulator, *args: str) -> tuple[int, str, str]:
    command = Command("login", "--host", emu.base_url, "--no-browser", *args)
    emu.approve(command.user_code())
    return command.finish()


@pytest.mark.airflow_line("the login writes the connection into the line's metadata DB")
def test_login_status_sessions_revoked_token_and_logout(emu: DifyOpenAPIEmulator) -> None:
    started = time.time()
    rc, out, err = approved_login(emu, "--conn-id", "dify_login_a", "--workspace-id", SECOND_WORKSPACE_ID)
    assert rc == 0, err
    assert f"Logged in to Dify as {ACCOUNT_EMAIL}. Created connection 'dify_login_a'" in out
    assert f"open http://{emu.netloc}/device and enter the code: " in err

    conn = stored("dify_login_a")
    token = conn.password
    # dify-openapi: no '_' for Airflow to warn about each time a task reads the connection from the DB.
    assert conn.conn_type == "dify-openapi" and conn.host == emu.base_url and token.startswith("dfoa_")
    session = emu.session(token)
    assert session is not None and session.live and session.device_label.endswith("/dify_login_a")
    extra = conn.extra_dejson
    expires = extra["token_expires_at"]
    assert abs(datetime.fromisoformat(expires).timestamp() - session.expires_at) < 1.5
    assert session.expires_at > started + 13 * 86400
    assert extra["workspace_id"] == SECOND_WORKSPACE_ID and extra["token_id"] == session.id
    assert extra["console_url"] == f"http://{emu.netloc}"
    outputs = [out, err]

    rc, out, err = cli("status", "--conn-id", "dify_login_a")
    outputs += [out, err]
    assert rc == 0, err
    assert ACCOUNT_EMAIL in out and SECOND_WORKSPACE_ID in out and "dify_login_a" in out
    assert "lapses at " + expires[:19] in out and "(in 14.0 days)" in out

    other = emu.issue_token(device_label="laptop")
    other_id = emu.session(other).id
    rc, out, err = cli("sessions", "--conn-id", "dify_login_a")
    outputs += [out, err]
    assert rc == 0, err
    rows = {line[2:38].strip(): line for line in out.splitlines()[1:]}
    assert rows[session.id].startswith("* ") and "/dify_login_a" in rows[session.id]
    assert rows[other_id].startswith("  ") and "laptop" in rows[other_id]
    assert sum(line.startswith("* ") for line in out.splitlines()) == 1

    # Another session revoked by id: this connection keeps its token.
    rc, out, err = cli("logout", "--conn-id", "dify_login_a", "--session-id", other_id)
    outputs += [out, err]
    assert rc == 0, err
    assert f"Revoked session {other_id}." in out
    assert emu.session(other).revoked and session.live and stored("dify_login_a").password == token

    # Revoked in Dify's console: status says so, by name, and how to recover.
    emu.revoke_token(token)
    rc, out, err = cli("status", "--conn-id", "dify_login_a")
    outputs += [out, err]
    assert rc == 1
    assert "GET /account: Dify refused the token of connection 'dify_login_a' (HTTP 401" in err
    assert "airflow-dify login --conn-id dify_login_a" in err and "Traceback" not in err

    rc, out, err = cli("logout", "--conn-id", "dify_login_a")
    outputs += [out, err]
    assert rc == 0, err
    assert "Dify already refused the token (HTTP 401); cleared it from connection 'dify_login_a'" in out
    after = stored("dify_login_a")
    assert not after.password and "token_expires_at" not in after.extra_dejson
    assert after.extra_dejson["workspace_id"] == SECOND_WORKSPACE_ID and after.host == emu.base_url

    for text in outputs:
        assert token not in text and token[9:] not in text


def test_print_env_denied_expired_timeout_slow_down_and_logout() -> None:
    """Five logins at once (each starts Airflow: in parallel they take the time of about two)."""
    from airflow.models.connection import Connection

    from docify_provider.dify_openapi.client import DifyOpenAPIClient
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    with (
        DifyOpenAPIEmulator(device_poll_interval=0.2) as fast,
        DifyOpenAPIEmulator(device_poll_interval=0.2, device_code_ttl=1) as short,
        DifyOpenAPIEmulator(device_poll_interval=1.5, device_advertised_interval=0.2) as strict,
    ):
        login = ("login", "--host", fast.base_url, "--no-browser", "--conn-id")
        printed = Command(*login, "dify_login_b", "--print-env")
        denied = Command(*login, "dify_denied")
        waited = Command(*login, "dify_t", "--timeout", "1")
        expired = Command("login", "--host", short.base_url, "--no-browser", "--conn-id", "dify_expired")
        slowed = Command("login", "--host", strict.base_url, "--no-browser", "--conn-id", "dify_slow")

        fast.approve(printed.user_code())
        fast.deny(denied.user_code())
        slow_code = slowed.user_code()
        deadline = time.monotonic() + 60
        while len(strict.device_polls(slow_code)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        strict.approve(slow_code)

        # --print-env: one line a shell or .env file reads, a connection Airflow accepts; nothing stored.
        rc, out, err = printed.finish()
        assert rc == 0, err
        name, _, value = out.strip().partition("=")
        assert name == "AIRFLOW_CONN_DIFY_LOGIN_B" and len(out.strip().splitlines()) == 1
        (value,) = shlex.split(value)
        conn = Connection.from_json(value, conn_id="dify_login_b")
        config = DifyOpenAPIHook.config_from_connection(conn)
        with DifyOpenAPIClient(config) as client:
            assert client.get_account().email == ACCOUNT_EMAIL
        assert config.token_expires_at is not None and config.base_url == fast.base_url
        assert conn.password not in err and stored("dify_login_b") is None
        assert "not written (--print-env without --save)" in err

        rc, out, err = denied.finish()
        assert rc == 1 and not out
        assert "The login was denied in the Dify console; start a new login" in err and "Traceback" not in err

        rc, out, err = expired.finish()
        assert rc == 1 and "The device code expired" in err and "start a new login" in err

        rc, out, err = waited.finish()
        assert rc == 1 and "No approval within --timeout 1 s" in err

        rc, out, err = slowed.finish()
        assert rc == 0, err
        polls = strict.device_polls(slow_code)
        assert "Dify asked to poll more slowly (slow_down): polling every 6 s." in err, polls
        gaps = [b - a for a, b in itertools.pairwise(polls)]
        # 0.2 s advertised, polled at DevicePoll's 1 s floor -> slow_down (1.5 s enforced) -> 1 + 5 s
        # (RFC 8628 3.5) -> the token.
        assert len(polls) == 3, gaps
        assert 0.95 < gaps[0] < 1.5 and 5.95 < gaps[1] < 8, gaps

        # logout with a live token: DELETE /account/sessions/self, then the password is cleared.
        token = stored("dify_slow").password
        assert strict.session(token).live
        rc, out, err = cli("logout", "--conn-id", "dify_slow")
        assert rc == 0, err
        assert "Revoked the token in Dify; cleared it from connection 'dify_slow'" in out
        assert strict.session(token).revoked and not stored("dify_slow").password
        assert token not in out + err
    for conn_id in ("dify_denied", "dify_expired", "dify_t"):
        assert stored(conn_id) is None


def test_bad_options_name_the_option(emu: DifyOpenAPIEmulator) -> None:
    rc, _, err = cli("login", "--conn-id", "dify_nowhere", "--no-browser")
    assert rc == 2 and "--host is required: connection 'dify_nowhere' does not exist yet" in err
    rc, _, err = cli("login", "--host", "dify.example/openapi/v1", "--print-env")
    assert rc == 2 and "--host must be an http(s) URL" in err
    rc, _, err = cli("login", "--host", emu.base_url, "--client-id", "evil", "--print-env", "--no-browser")
    assert rc == 1 and "--client-id 'evil': Dify does not know this client (unsupported_client)" in err
    rc, _, err = cli("login", "--host", emu.base_url.replace("/openapi/v1", "/v1"), "--print-env", "--no-browser")
    assert rc == 1 and "no device login there (HTTP 404" in err
    rc, _, err = cli("status", "--conn-id", "dify_nowhere")
    assert rc == 2 and "No connection 'dify_nowhere' (--conn-id): log in first" in err


def test_a_connection_of_the_type_before_0_7_is_still_an_account_connection(emu: DifyOpenAPIEmulator) -> None:
    """``dify_openapi`` connections (0.6.0 and earlier; and what Airflow makes of a dify-openapi URI or JSON)
    are read like ``dify-openapi`` ones; any other type is refused."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN

    with create_session() as session:
        for conn_id, conn_type in (("dify_older", "dify_openapi"), ("not_dify", "docify")):
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            session.add(Connection(conn_id=conn_id, conn_type=conn_type, host=emu.base_url, password=ACCOUNT_TOKEN))
    rc, out, err = cli("status", "--conn-id", "dify_older")
    assert rc == 0 and ACCOUNT_EMAIL in out, err
    rc, _, err = cli("status", "--conn-id", "not_dify")
    assert rc == 2 and "is of type 'docify', not dify-openapi" in err


def test_console_script_is_declared() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '\nairflow-dify = "docify_provider.cli.dify_login:main"\n' in text


@pytest.mark.airflow_line("provider info 'cli': `airflow dify` from Airflow 3.2")
@pytest.mark.skipif(AIRFLOW_LINE < (3, 2), reason="provider info 'cli' is read by Airflow 3.2+")
def test_airflow_cli_group() -> None:
    done = subprocess.run(
        [str(BIN / "airflow"), "dify", "login", "--help"], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert done.returncode == 0, done.stderr
    for option in ("--host", "--conn-id", "--client-id", "--workspace-id", "--console-url", "--print-env"):
        assert option in done.stdout
    # The action runs through Airflow's CLI too, exit code included.
    done = subprocess.run(
        [str(BIN / "airflow"), "dify", "status", "--conn-id", "dify_nowhere"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert done.returncode == 2 and "No connection 'dify_nowhere' (--conn-id)" in done.stderr
