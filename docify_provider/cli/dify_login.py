"""``airflow-dify login|status|sessions|logout``: the Dify account connection from a device login.

``login`` runs RFC 8628 through ``DifyOpenAPIClient.start_device_flow`` / ``poll_device_token``
(the sans-IO ``DevicePoll`` decides interval, ``slow_down``, ``authorization_pending``,
``expired_token`` and ``access_denied``), then writes the ``dify_openapi`` connection into
Airflow's metadata database: host, password = the account token, extras ``workspace_id``,
``console_url``, ``token_expires_at``, ``token_id`` (other extras of an existing connection are
kept). ``status``, ``sessions`` and ``logout`` read the connection through ``DifyOpenAPIHook``.

The same option table (``COMMANDS``) builds the ``airflow-dify`` console script (every Airflow
line) and the ``airflow dify ...`` group (Airflow 3.2+, provider info ``cli``). Instructions go to
stderr and results to stdout, so ``airflow-dify login --print-env >> .env`` captures one line.
The token is printed only by ``--print-env``; nothing else prints or logs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import socket
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from docify_provider._core.config import Secret, reveal
from docify_provider._core.errors import ProviderError
from docify_provider.dify_openapi.client import DifyOpenAPIClient
from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig
from docify_provider.dify_openapi.device import DeviceCode, DeviceToken
from docify_provider.dify_openapi.errors import DifyOpenAPIDeviceFlowError, DifyOpenAPIHTTPError
from docify_provider.get_provider_info import DIFY_OPENAPI_CONN_TYPE as CONN_TYPE
from docify_provider.get_provider_info import DIFY_OPENAPI_CONN_TYPES as CONN_TYPES

DEFAULT_CONN_ID = "dify_openapi_default"
DEFAULT_CLIENT_ID = "difyctl"
#: Exit codes: a failure of the login or of Dify (1), a bad option or connection (2, as argparse).
FAILED, USAGE = 1, 2


class CLIError(Exception):
    """A failure to report in one line (no traceback) with exit code ``code``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- options (one table for the console script and Airflow's CLI) ------------------------------

Option = tuple[tuple[str, ...], dict[str, Any]]

CONN_ID: Option = (
    ("--conn-id",),
    {"default": DEFAULT_CONN_ID, "help": f"Airflow connection id (type dify_openapi). Default: {DEFAULT_CONN_ID}."},
)
COMMANDS: dict[str, tuple[str, list[Option]]] = {
    "login": (
        "Log in to Dify with a device code (RFC 8628) and store the account token in an Airflow connection.",
        [
            (
                ("--host",),
                {
                    "help": "Dify's OpenAPI base URL, e.g. https://dify.example/openapi/v1 (Dify Cloud: "
                    "https://api.dify.ai/openapi/v1). Default: the existing connection's host."
                },
            ),
            CONN_ID,
            (
                ("--client-id",),
                {
                    "default": DEFAULT_CLIENT_ID,
                    "help": "OAuth client id Dify knows (OPENAPI_KNOWN_CLIENT_IDS). Default: difyctl.",
                },
            ),
            (
                ("--workspace-id",),
                {"help": "Workspace whose apps are used (extra workspace_id). Default: the account's default."},
            ),
            (
                ("--console-url",),
                {"help": "The Dify console URL (extra console_url). Default: from the verification URL."},
            ),
            (
                ("--device-label",),
                {
                    "help": "Name of this login in Dify's session list. A new login with the same label "
                    "replaces the old token. Default: airflow@<hostname>/<conn id>."
                },
            ),
            (
                ("--print-env",),
                {
                    "action": "store_true",
                    "help": "Print AIRFLOW_CONN_<ID>='<json>' (the token included) to stdout instead of "
                    "writing the connection; with --save, do both.",
                },
            ),
            (("--save",), {"action": "store_true", "help": "With --print-env: also write the connection."}),
            (
                ("--no-browser",),
                {"action": "store_true", "help": "Do not open the verification URL in a browser."},
            ),
            (
                ("--timeout",),
                {
                    "type": float,
                    "help": "Seconds to wait for the approval. Default: until the device code expires (15 min).",
                },
            ),
        ],
    ),
    "status": ("Show who the connection's token belongs to and when it lapses (never the token).", [CONN_ID]),
    "sessions": ("List the account's sessions (device logins); * marks this connection's.", [CONN_ID]),
    "logout": (
        "Revoke the connection's token in Dify and clear it from the connection, or revoke another session.",
        [
            CONN_ID,
            (
                ("--session-id",),
                {"help": "Revoke this session (an id from `sessions`) instead of the connection's own token."},
            ),
        ],
    ),
}


# -- small helpers ------------------------------------------------------------------------------


def _say(text: str, out: TextIO | None = None) -> None:
    print(text, file=out or sys.stderr, flush=True)


def _env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def _lapse_text(when: datetime | None) -> str:
    if when is None:
        return "unknown"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds <= 0:
        return f"{when.isoformat()} (lapsed: log in again)"
    return f"{when.isoformat()} (in {seconds / 86400:.1f} days)"


def _check_conn_id(conn_id: str) -> str:
    conn_id = (conn_id or "").strip()
    if not conn_id or any(c.isspace() for c in conn_id):
        raise CLIError(f"--conn-id must be a non-empty connection id without spaces, got {conn_id!r}", USAGE)
    return conn_id


def _check_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if not host.lower().startswith(("http://", "https://")) or "://" not in host or not host.split("://", 1)[1]:
        raise CLIError(f"--host must be an http(s) URL such as https://dify.example/openapi/v1, got {host!r}", USAGE)
    return host


def _dify_error(exc: ProviderError, what: str, conn_id: str | None = None) -> CLIError:
    """A client error as one line naming what failed; a 401 says to log in again."""
    if isinstance(exc, DifyOpenAPIHTTPError) and exc.status_code == 401:
        again = f" --conn-id {conn_id}" if conn_id and conn_id != DEFAULT_CONN_ID else ""
        return CLIError(
            f"{what}: Dify refused the token of connection {conn_id!r} (HTTP 401: it was revoked or has "
            f"lapsed). Log in again with `airflow-dify login{again}`."
        )
    return CLIError(f"{what}: {exc}")


# -- Airflow's connection (the only Airflow-aware part) -----------------------------------------


def _db_connection(session: Any, conn_id: str) -> Any:
    from airflow.models.connection import Connection
    from sqlalchemy import select

    return session.scalar(select(Connection).where(Connection.conn_id == conn_id))


def _existing(conn_id: str) -> dict[str, Any] | None:
    """The stored connection's host, extras and whether it has a token (never the token itself)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = _db_connection(session, conn_id)
        if conn is None:
            return None
        return {
            "conn_type": conn.conn_type,
            "host": conn.host,
            "extra": dict(conn.extra_dejson or {}),
            "has_token": bool(conn.password),
        }


def _conn_fields(host: str, token: DeviceToken, extra: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    extra = dict(extra)
    if args.workspace_id:
        extra["workspace_id"] = args.workspace_id
    if args.console_url:
        extra["console_url"] = args.console_url.rstrip("/")
    extra["token_expires_at"] = token.expires_at.isoformat() if token.expires_at else None
    extra["token_id"] = token.token_id
    return {"conn_type": CONN_TYPE, "host": host, "extra": {k: v for k, v in extra.items() if v is not None}}


def _save(conn_id: str, fields: dict[str, Any], token: Secret) -> bool:
    """Create or update the connection in the metadata DB; True when it was created."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = _db_connection(session, conn_id)
        created = conn is None
        if conn is None:
            conn = Connection(conn_id=conn_id, conn_type=CONN_TYPE)
            session.add(conn)
        conn.conn_type = fields["conn_type"]
        conn.host = fields["host"]
        conn.password = token.reveal()
        conn.set_extra(json.dumps(fields["extra"]))
    return created


def _clear_token(conn_id: str) -> bool:
    """Drop the token (and its expiry and id) from the stored connection; False if there was none."""
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = _db_connection(session, conn_id)
        if conn is None or not conn.password:
            return False
        extra = {k: v for k, v in (conn.extra_dejson or {}).items() if k not in ("token_expires_at", "token_id")}
        conn.password = None
        if conn.password:  # Airflow 3.3's setter ignores a falsy value: clear the column itself
            conn._password = None
            conn.is_encrypted = False
        conn.set_extra(json.dumps(extra))
    return True


def _lookup(conn_id: str) -> Any:
    """The connection from Airflow's secrets backends in their order (environment variables,
    configured backends, the metadata DB), as ``Connection.get_connection_from_secrets`` does but
    without its URI cache (which warns that ``dify_openapi`` is no RFC 3986 scheme)."""
    from airflow.configuration import ensure_secrets_loaded

    for backend in ensure_secrets_loaded():
        conn = backend.get_connection(conn_id)
        if conn is not None:
            return conn
    return None


def _hook(conn_id: str) -> tuple[Any, str | None]:
    """``DifyOpenAPIHook`` on the connection and the session id the login stored (extra ``token_id``).

    The connection is looked up as Airflow's server side does (environment variable, secrets
    backends, then the metadata DB): outside a task the Task SDK's lookup has no metadata DB.
    """
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook(dify_openapi_conn_id=conn_id)
    conn = _lookup(conn_id)
    if conn is None:
        raise CLIError(
            f"No connection {conn_id!r} (--conn-id): log in first with `airflow-dify login --conn-id {conn_id}`",
            USAGE,
        )
    if conn.conn_type not in CONN_TYPES:
        raise CLIError(f"Connection {conn_id!r} (--conn-id) is of type {conn.conn_type!r}, not {CONN_TYPE}", USAGE)
    if not conn.password:
        raise CLIError(
            f"Connection {conn_id!r} (--conn-id) has no account token (logged out?): log in with "
            f"`airflow-dify login --conn-id {conn_id}`"
        )
    own = (conn.extra_dejson or {}).get("token_id")
    try:
        # the hook's own connection -> config, with a terminal's patience (see CLI_MAX_RETRIES)
        hook.__dict__["config"] = _for_terminal(hook._config(conn))
    except ProviderError as exc:
        raise CLIError(f"Connection {conn_id!r} (--conn-id): {exc}", USAGE) from None
    finally:
        del conn
    return hook, str(own) if own else None


# -- login --------------------------------------------------------------------------------------


def _device_label(conn_id: str) -> str:
    return f"airflow@{socket.gethostname()}/{conn_id}"


def _can_open_browser() -> bool:
    """Only where a graphical browser can start: ``webbrowser`` would take over a headless
    terminal with a text browser (lynx, w3m) otherwise."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _login_config(host: str, existing: dict[str, Any] | None) -> DifyOpenAPIClientConfig:
    """A login-only client config: the existing connection's HTTP extras (TLS, proxies, timeouts)
    kept, no token."""
    from docify_provider.hooks.base import ConnectionView
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    if existing is None:
        return _for_terminal(DifyOpenAPIClientConfig(base_url=host, login_only=True))
    view = ConnectionView(None, host, None, None, Secret("login"), existing["extra"])
    config = DifyOpenAPIHook.config_from_connection(view)
    return _for_terminal(dataclasses.replace(config, api_key="", login_only=True, base_url=host))


#: Retries of one CLI request (a read, a device-code request, a revocation). Tasks retry a failing
#: read four times with back-off (about 17 s against a host that does not answer); someone at a
#: terminal wants the error at once and can run the command again.
CLI_MAX_RETRIES = 1


def _for_terminal(config: DifyOpenAPIClientConfig) -> DifyOpenAPIClientConfig:
    return dataclasses.replace(config, max_retries=min(config.max_retries, CLI_MAX_RETRIES))


def _poll_sleep(announce: Callable[[str], None]) -> Callable[[float], None]:
    """``time.sleep`` that says when Dify asked to slow down (the wait grew)."""
    last: list[float] = []

    def sleep(seconds: float) -> None:
        if last and seconds > last[-1]:
            announce(f"Dify asked to poll more slowly (slow_down): polling every {seconds:g} s.")
        last.append(seconds)
        time.sleep(seconds)

    return sleep


def login(args: argparse.Namespace) -> int:
    conn_id = _check_conn_id(args.conn_id)
    if args.timeout is not None and args.timeout <= 0:
        raise CLIError(f"--timeout must be a positive number of seconds, got {args.timeout:g}", USAGE)
    if args.save and not args.print_env:
        raise CLIError("--save only goes with --print-env (without it the connection is always written)", USAGE)
    client_id = (args.client_id or "").strip()
    if not client_id:
        raise CLIError("--client-id must not be empty", USAGE)
    write = not args.print_env or args.save
    existing = _existing(conn_id) if write else None
    if existing is not None and existing["conn_type"] not in CONN_TYPES:
        raise CLIError(
            f"Connection {conn_id!r} is of type {existing['conn_type']!r}, not {CONN_TYPE}: "
            "pick another --conn-id (or delete that connection first)",
            USAGE,
        )
    host = args.host or (existing or {}).get("host")
    if not host:
        why = "with --print-env" if not write else f"connection {conn_id!r} does not exist yet to take it from"
        raise CLIError(f"--host is required: {why} (e.g. --host https://dify.example/openapi/v1)", USAGE)
    host = _check_host(host)
    if write and os.environ.get(_env_name(conn_id)):
        _say(
            f"Warning: {_env_name(conn_id)} is set in this environment; it takes precedence over the "
            "connection written to the metadata database."
        )

    try:
        config = _login_config(host, existing)
    except ProviderError as exc:
        raise CLIError(f"--host {host}: {exc}", USAGE) from None
    with DifyOpenAPIClient(config) as client:
        code = _start(client, host, client_id, args.device_label or _device_label(conn_id))
        _show(code, args.no_browser)
        token = _poll(client, code, args.timeout)

    fields = _conn_fields(host, token, (existing or {}).get("extra", {}), args)
    member_of = {str(w.get("id")) for w in token.workspaces}
    if not args.workspace_id and token.default_workspace_id:
        _say(f"Workspace: the account's default ({token.default_workspace_id}); pin one with --workspace-id.")
    elif args.workspace_id and member_of and args.workspace_id not in member_of:
        _say(f"Warning: --workspace-id {args.workspace_id} is not among the account's workspaces.")
    if "console_url" not in fields["extra"] and code.verification_uri.rstrip("/").endswith("/device"):
        fields["extra"]["console_url"] = code.verification_uri.rstrip("/")[: -len("/device")]

    who = token.account.get("email") or token.account.get("name") or token.account.get("id") or "?"
    if args.print_env:
        value = json.dumps({**fields, "password": token.token.reveal()})
        print(f"{_env_name(conn_id)}={shlex.quote(value)}", flush=True)
    if write:
        created = _save(conn_id, fields, token.token)
        verb = "Created" if created else "Updated"
        print(f"Logged in to Dify as {who}. {verb} connection {conn_id!r} ({host}).", flush=True)
    else:
        _say(f"Logged in to Dify as {who}. The connection was not written (--print-env without --save).")
    _say(f"The token lapses at {_lapse_text(token.expires_at)}.")
    return 0


def _start(client: DifyOpenAPIClient, host: str, client_id: str, label: str) -> DeviceCode:
    try:
        return client.start_device_flow(client_id=client_id, device_label=label)
    except DifyOpenAPIHTTPError as exc:
        error = exc.code or ""
        if error in ("unsupported_client", "invalid_client"):
            raise CLIError(
                f"--client-id {client_id!r}: Dify does not know this client ({error}); its admin lists the "
                "allowed ones in OPENAPI_KNOWN_CLIENT_IDS (default: difyctl)"
            ) from None
        if exc.status_code == 404:
            raise CLIError(
                f"--host {host}: no device login there (HTTP 404 at POST /oauth/device/code). Is it the OpenAPI "
                "base ending in /openapi/v1, and is the OpenAPI on (OPENAPI_ENABLED)?"
            ) from None
        raise CLIError(f"Starting the device login at {host} failed: {exc}") from None
    except ProviderError as exc:
        raise CLIError(f"Starting the device login at --host {host} failed: {exc}") from None


def _show(code: DeviceCode, no_browser: bool) -> None:
    _say(f"To log in, open {code.verification_uri} and enter the code: {code.user_code}")
    _say(f"  (or open {code.verification_uri_complete})")
    if not no_browser and _can_open_browser():
        try:
            webbrowser.open(code.verification_uri_complete)
        except Exception as exc:  # a browser that cannot start must not end the login
            _say(f"  (could not open a browser: {exc})")
    _say(f"Waiting for the approval (the code expires in {code.expires_in / 60:.0f} min)...")


def _poll(client: DifyOpenAPIClient, code: DeviceCode, timeout: float | None) -> DeviceToken:
    # --timeout shortens the code's life as the poll loop sees it (issued_at stays).
    limited = timeout is not None and timeout < code.expires_in
    polled = dataclasses.replace(code, expires_in=timeout) if timeout is not None and limited else code
    try:
        return client.poll_device_token(polled, sleep=_poll_sleep(_say))
    except DifyOpenAPIDeviceFlowError as exc:
        if limited and exc.reason == "expired_token" and time.monotonic() >= polled.issued_at + polled.expires_in:
            raise CLIError(f"No approval within --timeout {timeout:g} s; start a new login.") from None
        raise CLIError(exc.message) from None
    except ProviderError as exc:
        raise CLIError(f"Polling for the device token failed: {exc}") from None
    except KeyboardInterrupt:
        raise CLIError("Login cancelled.", 130) from None


# -- status, sessions, logout -------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    conn_id = _check_conn_id(args.conn_id)
    hook, _ = _hook(conn_id)
    config = hook.config
    try:
        account = hook.get_account()
    except ProviderError as exc:
        raise _dify_error(exc, "GET /account", conn_id) from None
    finally:
        hook.close()
    workspace = config.workspace_id or f"{account.default_workspace_id} (the account's default)"
    print(f"Connection: {conn_id} ({config.base_url})")
    print(f"Account:    {account.name or '?'} <{account.email or '?'}> (id {account.id or '?'})")
    print(f"Workspace:  {workspace}")
    print(f"Token:      lapses at {_lapse_text(config.token_expires_at)}")
    return 0


def sessions(args: argparse.Namespace) -> int:
    conn_id = _check_conn_id(args.conn_id)
    hook, own = _hook(conn_id)
    try:
        rows = hook.client.list_sessions()
    except ProviderError as exc:
        raise _dify_error(exc, "GET /account/sessions", conn_id) from None
    finally:
        hook.close()
    token = reveal(hook.config.api_key)
    print(f"{'':2}{'SESSION ID':38}{'CLIENT':10}{'DEVICE':34}{'PREFIX':12}EXPIRES AT")
    for row in rows:
        current = row.id == own if own else bool(row.prefix) and token.startswith(str(row.prefix))
        expires = row.expires_at.isoformat() if row.expires_at else "-"
        mark = "* " if current else "  "
        print(f"{mark}{row.id:38}{row.client_id or '-':10}{row.device_label or '-':34}{row.prefix or '-':12}{expires}")
    return 0


def logout(args: argparse.Namespace) -> int:
    conn_id = _check_conn_id(args.conn_id)
    hook, own = _hook(conn_id)
    target = (args.session_id or "").strip() or None
    if args.session_id is not None and target is None:
        raise CLIError("--session-id must not be empty", USAGE)
    try:
        hook.client.revoke_session(target)
        revoked = True
    except DifyOpenAPIHTTPError as exc:
        if exc.status_code == 401 and target is None:
            revoked = False  # already dead in Dify: still clear it here
        elif exc.status_code == 404 and target is not None:
            raise CLIError(f"--session-id {target}: no such session of this account (HTTP 404)") from None
        else:
            raise _dify_error(exc, f"DELETE /account/sessions/{target or 'self'}", conn_id) from None
    except ProviderError as exc:
        raise _dify_error(exc, f"DELETE /account/sessions/{target or 'self'}", conn_id) from None
    finally:
        hook.close()
    if target is not None and target != own:
        print(f"Revoked session {target}.")
        return 0
    cleared = _clear_token(conn_id)
    state = "Revoked the token in Dify" if revoked else "Dify already refused the token (HTTP 401)"
    where = (
        f"cleared it from connection {conn_id!r}"
        if cleared
        else f"connection {conn_id!r} is not in the metadata database (unset {_env_name(conn_id)} yourself)"
    )
    print(f"{state}; {where}.")
    return 0


# -- entry points -------------------------------------------------------------------------------

ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "login": login,
    "status": status,
    "sessions": sessions,
    "logout": logout,
}


def run(name: str, args: argparse.Namespace) -> int:
    """Run one subcommand; a ``CLIError`` becomes one line on stderr and its exit code."""
    # httpx logs every request (each poll) at INFO, and Airflow 3.0's logging prints INFO to
    # stdout, where --print-env's line must stand alone.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return ACTIONS[name](args)
    except CLIError as exc:
        _say(f"airflow-dify {name}: error: {exc}")
        return exc.code


def build_parser(prog: str = "airflow-dify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Log Airflow in to Dify's account API (dify_openapi).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, options) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        for flags, kwargs in options:
            sub.add_argument(*flags, **kwargs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``airflow-dify`` console script (works on every Airflow line the provider supports)."""
    args = build_parser().parse_args(argv)
    return run(args.command, args)


# Airflow's CLI calls these with the parsed namespace and ignores the return value: exit here.


def login_command(args: argparse.Namespace) -> None:
    sys.exit(run("login", args))


def status_command(args: argparse.Namespace) -> None:
    sys.exit(run("status", args))


def sessions_command(args: argparse.Namespace) -> None:
    sys.exit(run("sessions", args))


def logout_command(args: argparse.Namespace) -> None:
    sys.exit(run("logout", args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
