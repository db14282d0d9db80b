"""A bundled emulator of Dify's user-scoped OpenAPI (``/openapi/v1``, bearer account tokens).

Built on the Service-API emulator (:mod:`docify_provider.testing.dify`: same run engine, SSE
framing, forms and faults). See :class:`DifyOpenAPIEmulator`.

    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, TEXT_APP_ID, DifyOpenAPIEmulator

    with DifyOpenAPIEmulator(paths="current", ping_interval=0.2) as emu:
        ...  # client at emu.base_url (ends in /openapi/v1), Authorization: Bearer ACCOUNT_TOKEN

Constants (fixed across runs):

* Tokens: ``ACCOUNT_TOKEN`` (account ``ACCOUNT_ID``, ``ACCOUNT_EMAIL``; member of
  ``WORKSPACE_ID`` as owner and ``SECOND_WORKSPACE_ID``), ``OTHER_ACCOUNT_TOKEN`` (account
  ``OTHER_ACCOUNT_ID``, member of ``WORKSPACE_ID`` only: "another caller"). Both live for
  ``token_ttl``; ``emu.issue_token(ttl=...)`` mints more, ``emu.revoke_token(t)`` revokes.
* Workspaces: ``WORKSPACE_ID`` ("Emulator Workspace", the default), ``SECOND_WORKSPACE_ID``
  ("Second Workspace"), ``FOREIGN_WORKSPACE_ID`` (not a member: 404).
* Apps in ``WORKSPACE_ID`` (id - name - mode - tags - inputs):

  - ``TEXT_APP_ID`` - "Text Writer" - workflow - emulator, nightly - topic (text, required), tone (select)
  - ``DOCUMENT_APP_ID`` - "Document Summary" - workflow - emulator, nightly - document (file,
    required), attachments (file-list); outputs a CSV report file
  - ``LONG_APP_ID`` - "Long Job" - workflow - emulator, nightly - seconds, steps (numbers, defaults 2 and 1)
  - ``HUMAN_INPUT_APP_ID`` - "Review Gate" - workflow - emulator, human-input - topic; one form
    (input ``comment``; actions approve / reject)
  - ``TWO_FORMS_APP_ID`` - "Two-Step Review" - workflow - emulator, human-input - topic; two
    forms in sequence: "Outline review" (inputs ``comment``, a paragraph, default "Looks fine";
    ``priority``, a select of low / normal / high, default "normal"; approve / reject), then
    "Final sign-off" (``signature`` default "emulator"; sign / reject). Outputs: outline_action,
    comment, priority, sign_off_action, signature.
  - ``CHAT_APP_ID`` - "Chat Assistant" - chat - emulator, chat, nightly - name (optional); query required
  - ``ADVANCED_CHAT_APP_ID`` - "Advanced Chat" - advanced-chat - emulator, chat - name; query required
  - ``COMPLETION_APP_ID`` - "Completion Writer" - completion - emulator, nightly - topic (required)
  - ``DISABLED_APP_ID`` - "Disabled Writer" - workflow - Service API off (403 ``service_api_disabled``)
* ``SECOND_WORKSPACE_APP_ID`` ("Second Writer", workflow, tag nightly) in ``SECOND_WORKSPACE_ID``;
  ``FOREIGN_APP_ID`` in ``FOREIGN_WORKSPACE_ID`` (404). ``NIGHTLY_TAG = "nightly"``: in the default workspace
  five apps of three modes carry it (Text Writer, Document Summary, Long Job, Chat Assistant,
  Completion Writer, the apps ``example_dags/example_dify_nightly.py`` names); tags are served
  (rows, describe, the ``tag`` filter) only with ``server_profile="documented"``: by default the
  emulator answers as current Dify, which has none.
* ``APP_MODES``; device flow client id ``"difyctl"`` (``known_client_ids``). The device code's
  ``verification_uri`` is the emulator's own page ``http://HOST:PORT/device`` (``emu.device_url``;
  ``?user_code=`` prefills it): a person approves or denies there, as on Dify's console, as the
  built-in account. ``auto_approve=True`` (command line ``--auto-approve``) approves every code as
  soon as it is issued, for scripts and CI.

Test-side API (beyond :class:`~docify_provider.testing.dify.DifyEmulator`'s ``run()``,
``wait_run_finished()``, ``wait_run_status()``, ``form_token()``, ``inject()``): ``emu.approve(user_code)``
/ ``emu.deny(user_code)`` (the console's device page), ``emu.answer_in_ui(form_token, action,
inputs)`` (a form answered in Dify's UI, not through the OpenAPI), ``emu.issue_token(ttl=...)``,
``emu.revoke_token(token)``, ``emu.session(token)``; counters ``runs_started(token, app=app_id)``,
``stop_requests(token, app=...)``, ``events_requests(token, app=...)``, ``runs_completed(token)``;
``emu.counters()`` (also ``GET /_emulator/counters``) adds ``device_logins``.
Runs are always SSE (fault endpoint ``stream``).

``server_profile``: ``"current"`` (default) or ``"documented"``; see :class:`DifyOpenAPIEmulator`
for what differs (worker ``error`` frames, ``TYPE`` pause reasons, re-attach, 401 ``token_expired``,
no tags, a paused run's stop leaving it paused, the resumed node re-announced). The
``rejected_input`` fault (shared with the Service API emulator) makes a run's worker reject its
inputs; no run is started. ``emu.worker_error_streams`` says how each such stream ended
("client closed", or "idle" when the client waited for the close).

Error bodies are ``{code, message, status, hint?, details?}``; ``code`` follows the status
(401 ``unauthorized``, 403 ``forbidden``, 404 ``not_found``, 422 ``invalid_param``) unless a
domain code applies (``form_not_found``, ``human_input_form_expired``,
``human_input_form_submitted``, ``invalid_form_data``); the 403/422 words B2/B5/B7 name
(``service_api_disabled``, ``app_mode_mismatch``, ``query_required_for_chat``,
``query_not_supported_for_workflow``, ``mode_not_supported_for_event_reconnect``) are the
``message``. Request validation is 422 ``invalid_param`` "Request validation failed" with
``details``. The bearer rate limit is a raw 429 ``{"error":"rate_limited","retry_after_ms":N}``
with ``Retry-After``; device-flow errors are raw ``{"error": ...}``.
"""

from docify_provider.testing.dify_openapi.directory import (
    ACCOUNT_EMAIL,
    ACCOUNT_ID,
    ACCOUNT_TOKEN,
    ADVANCED_CHAT_APP_ID,
    APP_MODES,
    CHAT_APP_ID,
    COMPLETION_APP_ID,
    DISABLED_APP_ID,
    DOCUMENT_APP_ID,
    FOREIGN_APP_ID,
    FOREIGN_WORKSPACE_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    NIGHTLY_TAG,
    OTHER_ACCOUNT_ID,
    OTHER_ACCOUNT_TOKEN,
    SECOND_WORKSPACE_APP_ID,
    SECOND_WORKSPACE_ID,
    TEXT_APP_ID,
    TWO_FORMS_APP_ID,
    WORKSPACE_ID,
    OpenAPIApp,
)
from docify_provider.testing.dify_openapi.emulator import VERSIONS, DifyOpenAPIEmulator

__all__ = [
    "ACCOUNT_EMAIL",
    "ACCOUNT_ID",
    "ACCOUNT_TOKEN",
    "ADVANCED_CHAT_APP_ID",
    "APP_MODES",
    "CHAT_APP_ID",
    "COMPLETION_APP_ID",
    "DISABLED_APP_ID",
    "DOCUMENT_APP_ID",
    "FOREIGN_APP_ID",
    "FOREIGN_WORKSPACE_ID",
    "HUMAN_INPUT_APP_ID",
    "LONG_APP_ID",
    "NIGHTLY_TAG",
    "OTHER_ACCOUNT_ID",
    "OTHER_ACCOUNT_TOKEN",
    "SECOND_WORKSPACE_APP_ID",
    "SECOND_WORKSPACE_ID",
    "TEXT_APP_ID",
    "TWO_FORMS_APP_ID",
    "VERSIONS",
    "WORKSPACE_ID",
    "DifyOpenAPIEmulator",
    "OpenAPIApp",
]
