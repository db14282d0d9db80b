"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``, Airflow 3.2+) so
the UI renders it without importing the hook; ``DocifyHook`` keeps the equivalent classmethods for
Airflow 3.0 and 3.1. Every field has a description; defaults are stated there rather than set in
the form, so that saving an untouched form does not copy them into the connection's extra.
"""

from __future__ import annotations

from typing import Any

from docify_provider import __version__

DEFAULT_BASE_URL = "https://console.docify.jp/docify"

#: What ``airflow providers list`` and the UI's providers page show: pyproject.toml's ``description``
#: (the package's summary on PyPI) with links (tests/packaging/test_versions.py checks they agree).
DESCRIPTION = (
    "Apache Airflow provider for [Docify](https://console.docify.jp/) AI scenarios and [Dify](https://dify.ai/) "
    "apps: Dify workflow apps through the Service API and every app of a workspace through the account API, "
    "with bundled emulators for tests."
)

#: Connection extras shown in the form: ``name -> (label, JSON schema, description)``. The schemas'
#: ``default`` is what the hook uses for a missing (or ``null``) extra; the form Airflow renders gets
#: ``CONN_FORM_FIELDS`` instead, which states it in the description (see there).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "default": 10},
        "description": "Seconds to wait for a connection to Docify. Default when empty: 10.",
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "default": 600},
        "description": "Seconds to wait for a blocking run's answer. Default when empty: 600.",
    },
    "idle_timeout": {
        "label": "Stream idle timeout (s)",
        "schema": {"type": ["number", "null"], "default": 300},
        "description": "Seconds a streaming run may go without an event (keep-alive pings do not count). "
        "Default when empty: 300.",
    },
    "max_stream_seconds": {
        "label": "Stream time limit (s)",
        "schema": {"type": ["number", "null"], "default": 7200},
        "description": "Longest a streaming run may stay open, even while events keep arriving "
        "(0: no limit). A run cut off by it may have been billed and is not re-sent. "
        "Default when empty: 7200 (2 h).",
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Check Docify's TLS certificate (on by default). Switch off only for a test server "
        "with a self-signed certificate: anyone in the network path could then read the API key. For a "
        "private certificate authority set 'CA bundle path' instead.",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Path to a CA bundle (PEM) for a private certificate authority, used instead of the "
        "system's CAs. Default when empty: the system's CAs.",
    },
    "proxy": {
        "label": "Proxy URL",
        "schema": {"type": ["string", "null"]},
        "description": "Proxy for every request, e.g. http://proxy.internal:3128 (extra 'proxies' may map "
        "URL patterns to proxies). Default when empty: HTTPS_PROXY / HTTP_PROXY from the environment, "
        "if set.",
    },
    "trusted_hosts": {
        "label": "Hosts trusted with the API key",
        "schema": {"type": ["string", "null"]},
        "description": "Comma-separated hosts besides the base URL's that may receive the key "
        "when downloading attachments. Default when empty: only the base URL's host.",
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// (non-loopback)",
        "schema": {"type": ["boolean", "null"], "default": False},
        "description": "Send the API key over a plain http:// base URL on a host other than localhost, "
        "unencrypted (off by default; http://localhost and 127.0.0.1 always work). Only for a trusted "
        "internal network or a test server.",
    },
    "max_retries": {
        "label": "Retries for safe requests",
        "schema": {"type": ["integer", "null"], "default": 4},
        "description": "Retries of scenario info, uploads and downloads after a network error, 429 or 5xx; "
        "runs are never re-sent. Default when empty: 4.",
    },
    "info_cache_seconds": {
        "label": "Scenario info reuse (s)",
        "schema": {"type": ["number", "null"], "default": 60},
        "description": "Seconds the scenario description that inputs are checked against is reused by the next "
        "tasks on the same machine; read again at once when inputs do not match it (0: read it for every task). "
        "Default when empty: 60.",
    },
    "default_user": {
        "label": "Default user identifier",
        "schema": {"type": ["string", "null"]},
        "description": "Docify user identifier sent when a task gives none. Default when empty: "
        "airflow:<dag_id>.<task_id>.",
    },
}

#: Extras whose form field keeps its schema ``default``: a toggle shows ``null`` as "off", so a
#: default-on toggle without it would show verification as off while it is on.
_FORM_DEFAULTS_KEPT = frozenset({"verify_ssl"})


def _form_field(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    schema = dict(spec["schema"])
    if name not in _FORM_DEFAULTS_KEPT:
        schema.pop("default", None)
    return {**spec, "schema": schema}


#: ``conn-fields`` as Airflow gets them. Airflow 3.2+ (``ProvidersManager._to_api_format``) turns
#: each field into ``{"value": schema["default"], ...}`` and the UI's form (``FlexibleForm``) saves
#: ``{name: value}`` for every field: a ``default`` would be written into the connection's extra by
#: an untouched form, pinning today's default in every connection. Without one the untouched field
#: saves ``null``, which the hook reads as "not set" (``config_from_connection``), like a missing
#: key; the description states the value used then. (Airflow writes the ``null``s regardless: the
#: UI keeps every field's key.) ``verify_ssl`` keeps its default, see ``_FORM_DEFAULTS_KEPT``.
CONN_FORM_FIELDS: dict[str, dict[str, Any]] = {name: _form_field(name, spec) for name, spec in CONN_FIELDS.items()}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "Docify API key (bound to one scenario)"},
}


DIFY_DEFAULT_BASE_URL = "https://api.dify.ai/v1"

#: The Dify connection's extras: Docify's, worded for Dify, with Dify's timeouts (Dify Cloud's
#: front answers a blocking run within 100 s; Dify pings a stream every 10 s and closes it after
#: 300 s without an event).
_DIFY_OVERRIDES: dict[str, dict[str, Any]] = {
    "read_timeout": {
        "schema": {"type": ["number", "null"], "default": 100},
        "description": "Seconds to wait for a blocking run's answer; a lost answer is found again through "
        "the app's logs, never re-sent. Default when empty: 100.",
    },
    "idle_timeout": {
        "schema": {"type": ["number", "null"], "default": 330},
        "description": "Seconds a streaming run may go without a byte before it is re-attached by its run id. "
        "Default when empty: 330.",
    },
    "trusted_hosts": {
        "description": "Comma-separated hosts besides the base URL's that may receive the key when downloading "
        "output files (e.g. the FILES_URL host of a self-hosted Dify). Default when empty: only the base URL's host.",
    },
    "info_cache_seconds": {
        "label": "App parameters reuse (s)",
        "description": "Seconds the app's /parameters that inputs are checked against are reused by the next "
        "tasks on the same machine; read again at once when inputs do not match them (0: read them for every "
        "task). Default when empty: 60.",
    },
    "max_retries": {
        "description": "Retries of app info, parameters, uploads, run lookups and downloads after a network "
        "error, 429 or 5xx; runs are never re-sent. Default when empty: 4.",
    },
}


def _dify_field(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    field = {key: value.replace("Docify", "Dify") if isinstance(value, str) else value for key, value in spec.items()}
    return {**field, **_DIFY_OVERRIDES.get(name, {})}


DIFY_CONN_FIELDS: dict[str, dict[str, Any]] = {
    **{name: _dify_field(name, spec) for name, spec in CONN_FIELDS.items()},
    # Read by DifyHook itself (the Service API's run-status endpoint and logs make both meaningful).
    "recovery_timeout": {
        "label": "Recovery timeout (s)",
        "schema": {"type": ["number", "null"], "default": 1800},
        "description": "How long to look for a run whose answer was lost (in the app's logs) and to wait for "
        "it to end; after that the outcome is unknown and the run is not re-sent. Default when empty: 1800.",
    },
    "poll_interval": {
        "label": "Poll interval (s)",
        "schema": {"type": ["number", "null"], "default": 5},
        "description": "Seconds between reads of the logs or the run detail while recovering or waiting for "
        "a run. Default when empty: 5.",
    },
}
DIFY_CONN_FORM_FIELDS: dict[str, dict[str, Any]] = {
    name: _form_field(name, spec) for name, spec in DIFY_CONN_FIELDS.items()
}
DIFY_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "API base URL (with /v1)", "password": "API key"},
    "placeholders": {"host": DIFY_DEFAULT_BASE_URL, "password": "Dify app API key (app-...)"},
}


DIFY_OPENAPI_DEFAULT_BASE_URL = "https://api.dify.ai/openapi/v1"

#: The Dify account connection's type. Hyphenated: Airflow's ``Connection.get_uri`` (which the API
#: server calls every time a task or trigger reads a connection stored in the metadata database)
#: warns "Connection schemes (type: ...) shall not contain '_' according to RFC3986" for a type with
#: ``_``; connections written by 0.6.0 and earlier have ``dify_openapi``, still registered and read alike, as
#: is what Airflow makes of ``dify-openapi`` when it parses a URI or JSON (it turns ``-`` into ``_``).
DIFY_OPENAPI_CONN_TYPE = "dify-openapi"
DIFY_OPENAPI_CONN_TYPES = (DIFY_OPENAPI_CONN_TYPE, "dify_openapi")

#: The Dify account connection (user-scoped OpenAPI, account token): the Dify extras without the
#: Service API's end user, plus the account's workspace, the console and when the token lapses.
DIFY_OPENAPI_CONN_FIELDS: dict[str, dict[str, Any]] = {
    **{
        name: spec
        for name, spec in DIFY_CONN_FIELDS.items()
        if name not in ("default_user", "recovery_timeout", "poll_interval", "info_cache_seconds")
    },
    "max_retries": {
        **DIFY_CONN_FIELDS["max_retries"],
        "description": "Retries of account, app and form reads, stops and downloads after a network error, "
        "429 (after Retry-After) or 5xx; runs are never re-sent. Default when empty: 4.",
    },
    "workspace_id": {
        "label": "Workspace id",
        "schema": {"type": ["string", "null"]},
        "description": "Workspace whose apps are listed and resolved by name. Default when empty: the "
        "account's default workspace (GET /account).",
    },
    "console_url": {
        "label": "Console URL",
        "schema": {"type": ["string", "null"]},
        "description": "The Dify console (e.g. https://cloud.dify.ai), for links in messages. Optional.",
    },
    "token_expires_at": {
        "label": "Token expires at",
        "schema": {"type": ["string", "null"]},
        "description": "When the account token lapses (ISO 8601, the device login's expires_at); the "
        "connection test warns ahead of it. Optional.",
    },
}
DIFY_OPENAPI_CONN_FORM_FIELDS: dict[str, dict[str, Any]] = {
    name: _form_field(name, spec) for name, spec in DIFY_OPENAPI_CONN_FIELDS.items()
}
DIFY_OPENAPI_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "OpenAPI base URL (with /openapi/v1)", "password": "Account token"},
    "placeholders": {"host": DIFY_OPENAPI_DEFAULT_BASE_URL, "password": "dfoa_... (device login)"},
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-docify",
        "name": "Docify",
        "description": DESCRIPTION,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Docify",
                "external-doc-url": "https://console.docify.jp/docify",
                "tags": ["software"],
            },
            {
                "integration-name": "Dify",
                "external-doc-url": "https://docs.dify.ai/",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {"integration-name": "Docify", "python-modules": ["docify_provider.hooks.docify"]},
            {
                "integration-name": "Dify",
                "python-modules": ["docify_provider.hooks.dify", "docify_provider.hooks.dify_openapi"],
            },
        ],
        "operators": [
            {"integration-name": "Docify", "python-modules": ["docify_provider.operators.docify"]},
            {
                "integration-name": "Dify",
                "python-modules": ["docify_provider.operators.dify", "docify_provider.operators.dify_openapi"],
            },
        ],
        "sensors": [
            {"integration-name": "Docify", "python-modules": ["docify_provider.sensors.docify"]},
            {"integration-name": "Dify", "python-modules": ["docify_provider.sensors.dify"]},
        ],
        "extra-links": ["docify_provider.operators.dify_openapi.DifyRunLogLink"],
        "triggers": [
            {"integration-name": "Docify", "python-modules": ["docify_provider.triggers.docify"]},
            {
                "integration-name": "Dify",
                "python-modules": ["docify_provider.triggers.dify", "docify_provider.triggers.dify_openapi"],
            },
        ],
        # Airflow 3.2+ adds these to its CLI (`airflow dify login ...`); older lines ignore the key
        # (their provider-info schema allows any key) and have the `airflow-dify` console script.
        "cli": ["docify_provider.cli.definition.get_dify_cli_commands"],
        "connection-types": [
            {
                "connection-type": "docify",
                "hook-class-name": "docify_provider.hooks.docify.DocifyHook",
                "hook-name": "Docify",
                "conn-fields": CONN_FORM_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            },
            {
                "connection-type": "dify",
                "hook-class-name": "docify_provider.hooks.dify.DifyHook",
                "hook-name": "Dify",
                "conn-fields": DIFY_CONN_FORM_FIELDS,
                "ui-field-behaviour": DIFY_UI_FIELD_BEHAVIOUR,
            },
            {
                "connection-type": DIFY_OPENAPI_CONN_TYPE,
                "hook-class-name": "docify_provider.hooks.dify_openapi.DifyOpenAPIHook",
                "hook-name": "Dify account",
                "conn-fields": DIFY_OPENAPI_CONN_FORM_FIELDS,
                "ui-field-behaviour": DIFY_OPENAPI_UI_FIELD_BEHAVIOUR,
            },
            {  # connections made by 0.6.0 and earlier (and Airflow's reading of a dify-openapi URI or JSON)
                "connection-type": "dify_openapi",
                "hook-class-name": "docify_provider.hooks.dify_openapi.DifyOpenAPIUnderscoreHook",
                "hook-name": "Dify account (dify_openapi)",
                "conn-fields": DIFY_OPENAPI_CONN_FORM_FIELDS,
                "ui-field-behaviour": DIFY_OPENAPI_UI_FIELD_BEHAVIOUR,
            },
        ],
    }
