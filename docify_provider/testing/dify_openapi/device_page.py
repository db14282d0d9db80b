"""The device-login page of Dify's console (``/device``), as the OpenAPI emulator serves it.

A device login (``airflow-dify login``) shows a code and the ``verification_uri`` of the device
code answer, ``<console>/device``; Dify's console page there takes the code (``?user_code=``
prefills it, as ``web/app/device/page.tsx`` reads it) and approves or denies it for the signed-in
user. Without this page a person trying the login on the emulator met a 404 and had to find
``POST /oauth/device/approve`` in the source.

The emulator's page approves as its built-in account (``ACCOUNT_ID``), with no sign-in, through
the same :class:`~docify_provider.testing.dify_openapi.device.DeviceFlow` as the API routes. It is
plain HTML: the buttons post a form back to ``/device`` and the answer is a result page, so it
works in any browser, headless ones included, with no script and nothing fetched from elsewhere.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

from docify_provider.testing.dify_openapi.device import DeviceCode, DeviceError
from docify_provider.testing.dify_openapi.directory import ACCOUNT_ID

if TYPE_CHECKING:
    from docify_provider.testing.base_handler import EmulatorRequestHandler
    from docify_provider.testing.dify_openapi.emulator import DifyOpenAPIEmulator

#: Where Dify's console serves the page (``verification_uri``), at the root of the host.
DEVICE_PATH = "/device"
MAX_FORM = 4096
_HEADERS = {
    "Cache-Control": "no-store",
    # RFC 8628 5.4: the code must not leak through history or Referer; the console forbids framing.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2939;margin:0}
main{max-width:32rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem;
box-shadow:0 1px 4px rgba(0,0,0,.12)}
.brand{color:#667085;font-size:.85rem;margin:0 0 1rem}h1{font-size:1.5rem;margin:0 0 .75rem}
h2{font-size:1rem;margin:1.25rem 0 .5rem}label{display:block;font-weight:600;margin:1rem 0 .35rem}
input{font:1.4rem ui-monospace,monospace;letter-spacing:.15em;padding:.4rem .6rem;width:11rem;
text-transform:uppercase}
.buttons{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;font-size:1rem;padding:.6rem;border-radius:8px;border:1px solid #d0d5dd;cursor:pointer}
button[value=approve]{background:#155eef;color:#fff;border-color:#155eef}
.notice{background:#fffaeb;border:1px solid #fedf89;border-radius:8px;padding:.6rem .8rem}
.note{color:#667085;font-size:.85rem;margin-top:1.5rem}code{background:#f2f4f7;padding:0 .2rem}
"""


def device_page(handler: EmulatorRequestHandler) -> None:
    """``GET /device[?user_code=...]``: the code form; ``POST /device``: its Approve / Deny buttons."""
    emu = cast("DifyOpenAPIEmulator", handler.emulator)  # served by DifyOpenAPIEmulator.tool_pages only
    if handler.command in ("GET", "HEAD"):
        query = parse_qs(urlsplit(handler.path).query)
        status, page = 200, entry_page(emu, normal_code(query.get("user_code", [""])[0]))
    elif handler.command == "POST":
        assert handler._reader is not None
        form = parse_qs(handler._reader.read_all(MAX_FORM).decode("utf-8", "replace"))
        status, page = answer(emu, normal_code(form.get("user_code", [""])[0]), form.get("action", [""])[0])
    else:
        handler._extra_headers["Allow"] = "GET, HEAD, POST"
        text = "<p>The device page answers GET (the form) and POST (its Approve and Deny buttons).</p>"
        status, page = 405, _page("Method not allowed", text)
    handler._send(status, page.encode("utf-8"), "text/html; charset=utf-8", _HEADERS)


def normal_code(text: str) -> str:
    """The code as the flow stores it: ``abcd efgh`` and ``ABCDEFGH`` are ``ABCD-EFGH``."""
    code = "".join(text.split()).upper()[:32]
    return f"{code[:4]}-{code[4:]}" if len(code) == 8 and "-" not in code else code


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _duration(seconds: float) -> str:
    """A lifetime as a person reads it: ``14 days``, ``1 hour``, ``15 min``, ``0.3 s``."""
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds >= size:
            n = round(seconds / size, 1)
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - Dify OpenAPI emulator</title><style>{_STYLE}</style></head>\n"
        f'<body><main><p class="brand">Dify OpenAPI emulator: device login</p>\n{body}\n</main></body></html>\n'
    )


def _account_text(emu: DifyOpenAPIEmulator) -> str:
    account = emu.accounts[ACCOUNT_ID]
    return f"<strong>{_e(account.name)}</strong> &lt;{_e(account.email)}&gt;"


def _what(emu: DifyOpenAPIEmulator) -> str:
    """What an approval gives, in the words of what the token can do."""
    account = emu.accounts[ACCOUNT_ID]
    spaces = " and ".join(f"<strong>{_e(emu.workspaces[w].name)}</strong>" for w in account.roles)
    return (
        f"<p>Approving gives the device that shows this code an account token of {_account_text(emu)} "
        f"for Dify's account API, valid {_e(_duration(emu.token_ttl))}: it can list and run the apps of "
        f"{spaces} as this account. <code>airflow-dify logout</code> revokes it.</p>"
    )


def _asking(code: DeviceCode) -> str:
    left = max(0.0, code.expires_at - time.time())
    return (
        f"<p>Asking: <strong>{_e(code.device_label)}</strong> (client <code>{_e(code.client_id)}</code>); "
        f"the code expires in {_e(_duration(left))}.</p>"
    )


def entry_page(emu: DifyOpenAPIEmulator, user_code: str, notice: str = "") -> str:
    """The form: the code (prefilled from ``?user_code=``), what is being approved, the buttons."""
    found = emu.device.by_user_code(user_code) if user_code else None
    asking = ""
    if not notice and user_code:
        if found is None or found.expired:
            notice = (
                f"The code {_e(user_code)} is unknown or has expired: check it against your terminal, "
                "or start a new login."
            )
        elif found.status != "pending":
            notice = f"The code {_e(user_code)} was already answered: start a new login for a new code."
        else:
            asking = _asking(found)
    body = (
        "<h1>Authorize a device</h1>\n"
        "<p>Enter the code your terminal shows (<code>airflow-dify login</code> prints it), "
        "then approve or deny the login.</p>\n"
        + (f'<p class="notice" role="alert">{notice}</p>\n' if notice else "")
        + f'<form method="post" action="{DEVICE_PATH}">\n'
        '<label for="user_code">Code</label>\n'
        f'<input id="user_code" name="user_code" value="{_e(user_code)}" placeholder="XXXX-XXXX" '
        'autocomplete="off" spellcheck="false" autofocus required>\n'
        f"<h2>What you approve</h2>\n{asking}{_what(emu)}\n"
        '<div class="buttons"><button type="submit" name="action" value="approve">Approve</button>'
        '<button type="submit" name="action" value="deny">Deny</button></div>\n</form>\n'
        '<p class="note">This page stands in for the device page of the Dify console: it approves as the '
        "emulator's built-in account, without signing in.</p>"
    )
    return _page("Authorize a device", body)


def answer(emu: DifyOpenAPIEmulator, user_code: str, action: str) -> tuple[int, str]:
    """The status and page of a button: approve or deny ``user_code`` as the built-in account."""
    if not user_code:
        return 400, entry_page(emu, "", "Enter the code your terminal shows (like ABCD-EFGH).")
    if action not in ("approve", "deny"):
        return 400, entry_page(emu, user_code, "Press Approve or Deny.")
    code = emu.device.by_user_code(user_code)
    try:
        emu.device.resolve(user_code, action == "approve", ACCOUNT_ID)
    except DeviceError as exc:
        if exc.code == "already_resolved" and code is not None:
            state = "denied" if code.status == "denied" else "approved"
            text = (
                f"<p>The code <code>{_e(user_code)}</code> was already {state}; each code is answered once. "
                "Start a new login for a new code.</p>"
            )
            return 409, _page("Code already used", f"<h1>Code already {state}</h1>\n{text}")
        text = (
            f"<p>No login waits for the code <code>{_e(user_code)}</code>: check it against the one your "
            f"terminal shows, or start a new login (a code lasts {_e(_duration(emu.device.expires_in))}).</p>"
            f'<p><a href="{DEVICE_PATH}">Enter another code</a></p>'
        )
        return 404, _page("Unknown or expired code", f"<h1>Unknown or expired code</h1>\n{text}")
    assert code is not None
    label = f"<strong>{_e(code.device_label)}</strong>"
    if action == "approve":
        text = (
            f"<p>{label} now has an account token of {_account_text(emu)}. The login waiting in your "
            "terminal receives it at its next poll and finishes; you can close this page.</p>"
        )
        return 200, _page("Approved", f"<h1>Approved: return to your terminal</h1>\n{text}")
    text = (
        f"<p>{label} gets no token. The login in your terminal stops with &ldquo;The login was denied&rdquo;; "
        "start a new login to try again.</p>"
    )
    return 200, _page("Denied", f"<h1>Denied</h1>\n{text}")
