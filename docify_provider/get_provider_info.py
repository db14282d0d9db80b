"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``, Airflow 3.2+) so
the UI renders it without importing the hook; ``DocifyHook`` keeps the equivalent classmethods for
Airflow 3.0 and 3.1.
"""

from __future__ import annotations

from typing import Any

from docify_provider import __version__

DEFAULT_BASE_URL = "https://console.docify.jp/docify"

#: Connection extras shown in the form: ``name -> (label, JSON schema, description)``.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "default": 10},
        "description": "Seconds to wait for a connection to Docify.",
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "default": 600},
        "description": "Seconds to wait for a blocking run's answer.",
    },
    "idle_timeout": {
        "label": "Stream idle timeout (s)",
        "schema": {"type": ["number", "null"], "default": 300},
        "description": "Seconds a streaming run may go without an event (keep-alive pings do not count).",
    },
    "max_stream_seconds": {
        "label": "Stream time limit (s)",
        "schema": {"type": ["number", "null"], "default": 7200},
        "description": "Longest a streaming run may stay open, even while events keep arriving "
        "(default 2 h; 0: no limit). A run cut off by it may have been billed and is not re-sent.",
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Path to a CA bundle for a private certificate authority.",
    },
    "proxy": {
        "label": "Proxy URL",
        "schema": {"type": ["string", "null"]},
        "description": "e.g. http://proxy.internal:3128 (extra 'proxies' may map URL patterns to proxies).",
    },
    "trusted_hosts": {
        "label": "Hosts trusted with the API key",
        "schema": {"type": ["string", "null"]},
        "description": "Comma-separated hosts besides the base URL's that may receive the key "
        "when downloading attachments.",
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// (non-loopback)",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "max_retries": {
        "label": "Retries for safe requests",
        "schema": {"type": ["integer", "null"], "default": 4},
        "description": "Scenario info, uploads and downloads only; runs are never re-sent.",
    },
    "default_user": {
        "label": "Default user identifier",
        "schema": {"type": ["string", "null"]},
        "description": "Sent as 'user' when a task gives none.",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "Docify API key (bound to one scenario)"},
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-docify",
        "name": "Docify",
        "description": "Run [Docify](https://console.docify.jp/) AI scenarios (document extraction, OCR, "
        "summaries) from Airflow: blocking, streaming and deferrable, with file upload and attachments.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Docify",
                "external-doc-url": "https://console.docify.jp/docify",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "Docify", "python-modules": ["docify_provider.hooks.docify"]}],
        "operators": [{"integration-name": "Docify", "python-modules": ["docify_provider.operators.docify"]}],
        "sensors": [{"integration-name": "Docify", "python-modules": ["docify_provider.sensors.docify"]}],
        "triggers": [{"integration-name": "Docify", "python-modules": ["docify_provider.triggers.docify"]}],
        "connection-types": [
            {
                "connection-type": "docify",
                "hook-class-name": "docify_provider.hooks.docify.DocifyHook",
                "hook-name": "Docify",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
