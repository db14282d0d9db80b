"""The provider as Airflow sees it: metadata valid against Airflow's schema, and the real CLI.

The CLI tests run ``airflow`` in subprocesses with a temporary AIRFLOW_HOME; they start together
(each takes seconds to import Airflow) and the tests read their results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from docify_provider import __version__
from docify_provider.get_provider_info import CONN_FIELDS, CONN_FORM_FIELDS, get_provider_info
from docify_provider.hooks.dify import DifyHook
from docify_provider.hooks.docify import DocifyHook, config_from_connection
from docify_provider.testing import SUMMARY_KEY, DocifyEmulator

pytestmark = pytest.mark.airflow_line(
    "provider registration: ProvidersManager, the connection form from the hook before 3.2 and from provider info after, the providers CLI"
)

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-docify" and info["versions"] == [__version__]
    conn_types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(conn_types) == {"docify", "dify", "dify-openapi", "dify_openapi"}
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook, DifyOpenAPIUnderscoreHook

    hooks = {
        "docify": DocifyHook,
        "dify": DifyHook,
        "dify-openapi": DifyOpenAPIHook,
        "dify_openapi": DifyOpenAPIUnderscoreHook,
    }
    for conn_type, hook in ((conn_types[name], hook) for name, hook in hooks.items()):
        assert conn_type["connection-type"] == hook.conn_type
        assert conn_type["hook-class-name"] == f"{hook.__module__}.{hook.__name__}"
    # Every extra the connection form offers is one the hook reads.
    assert set(conn_types["docify"]["conn-fields"]) == set(CONN_FIELDS)


def test_conn_fields_match_the_provider_yaml_schema() -> None:
    """The stricter ``conn-fields`` schema of provider.yaml (label, description, schema; nothing else)."""
    schema = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    properties = schema["properties"]["connection-types"]["items"]["properties"]
    if "conn-fields" not in properties:
        pytest.skip(f"Airflow {airflow.__version__} predates conn-fields (3.2)")
    fields_schema = properties["conn-fields"]
    for conn_type in get_provider_info()["connection-types"]:
        jsonschema.validate(conn_type["conn-fields"], fields_schema)


def test_every_form_field_is_described_with_its_default() -> None:
    for name, spec in CONN_FORM_FIELDS.items():
        description = spec.get("description") or ""
        assert len(description) > 20, f"{name} has no description"
        default = CONN_FIELDS[name]["schema"].get("default")
        if default is not None and not isinstance(default, bool):
            assert f"Default when empty: {default}" in description, name
    assert "on by default" in CONN_FORM_FIELDS["verify_ssl"]["description"]
    assert "off by default" in CONN_FORM_FIELDS["allow_insecure_http"]["description"]


def _saved_untouched_form() -> dict[str, object]:
    """The extra Airflow's connection form saves when no field is touched.

    The API serves each field as ``{"value": <schema default or None>, "schema", "description"}``
    (``HookMetaService`` over ``ProvidersManager``), and the UI's form writes ``{name: value}`` for
    every field (``setParamsDict`` of its FlexibleForm store, JSON.stringify keeps ``null``).
    """
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    if not hasattr(ProvidersManager, "_to_api_format"):
        pytest.skip(f"Airflow {airflow.__version__} builds the form from the hook's widgets, not conn-fields")
    [meta] = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "docify"]
    fields = dict(meta.extra_fields or {})
    assert set(fields) == set(CONN_FIELDS)
    for name, field in fields.items():
        assert field["description"] == CONN_FORM_FIELDS[name]["description"], name
    return json.loads(json.dumps({name: field["value"] for name, field in fields.items()}))


def test_untouched_form_saves_no_defaults_and_means_the_defaults() -> None:
    from airflow.models.connection import Connection

    saved = _saved_untouched_form()
    # Nothing but nulls (Airflow writes a key per field), except the toggle that must show "on".
    assert {k: v for k, v in saved.items() if v is not None} == {"verify_ssl": True}
    # ...and those nulls mean exactly what a connection without extras means.
    conn = Connection(conn_id="d", conn_type="docify", password="k", extra=json.dumps(saved))
    bare = Connection(conn_id="d", conn_type="docify", password="k")

    def settings(c: Connection) -> dict[str, object]:
        config = config_from_connection(c)
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "api_key"}

    assert settings(conn) == settings(bare)


def test_entry_point_is_registered() -> None:
    [ep] = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("docify_provider")]
    assert ep.load()() == get_provider_info()


def test_hook_form_for_older_airflow() -> None:
    behaviour = DocifyHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}


def _cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **extra})
    return env


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """Run the CLI commands in parallel against one emulator; results keyed by name.

    ``connections test`` prints only "Connection success!" unless ``--verbose`` shows the hook's
    log line, which names the scenario.
    """
    home = tmp_path_factory.mktemp("airflow-home")
    with DocifyEmulator() as emu:

        def conn(key: str) -> str:
            return json.dumps({"conn_type": "docify", "host": emu.base_url, "password": key})

        test_env = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
        commands = {
            "list": ([AIRFLOW, "providers", "list", "--output", "json"], _cli_env(home)),
            "hooks": ([AIRFLOW, "providers", "hooks", "--output", "json"], _cli_env(home)),
            "test-ok": (
                [AIRFLOW, "connections", "test", "docify_default", "--verbose"],
                _cli_env(home, AIRFLOW_CONN_DOCIFY_DEFAULT=conn(SUMMARY_KEY), **test_env),
            ),
        }
        running = {
            name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, (cmd, env) in commands.items()
        }
        results = {}
        for name, proc in running.items():
            out, _ = proc.communicate(timeout=240)
            results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
        results["emulator"] = subprocess.CompletedProcess(
            [], 0, json.dumps({"runs_started": emu.runs_started(), "endpoints": [r.endpoint for r in emu.requests]}), ""
        )
        yield results


def _json_rows(output: str) -> list[dict[str, str]]:
    """The JSON list an ``airflow ... -o json`` command printed (on one line or pretty-printed); log
    lines ("[2026-…] {…} INFO …", as Airflow 3.0 and 3.1 print them to stdout) may surround it."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\[", output, re.MULTILINE):
        with contextlib.suppress(ValueError):
            rows, _ = decoder.raw_decode(output[match.start() :])
            if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
                return rows
    raise AssertionError(f"no JSON list in the output:\n{output[-2000:]}")


@pytest.mark.slow
def test_cli_providers_list(cli: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = cli["list"]
    assert result.returncode == 0, result.stdout
    rows = {row["package_name"]: row for row in _json_rows(result.stdout)}
    assert rows["airflow-provider-docify"]["version"] == __version__


@pytest.mark.slow
def test_cli_providers_hooks(cli: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = cli["hooks"]
    assert result.returncode == 0, result.stdout
    rows = {row["connection_type"]: row for row in _json_rows(result.stdout)}
    assert rows["docify"]["class"] == "docify_provider.hooks.docify.DocifyHook"
    assert rows["docify"]["package_name"] == "airflow-provider-docify"
    # The account connection under both types, each its own hook class (one type per class in Airflow).
    assert rows["dify-openapi"]["class"] == "docify_provider.hooks.dify_openapi.DifyOpenAPIHook"
    assert rows["dify_openapi"]["class"] == "docify_provider.hooks.dify_openapi.DifyOpenAPIUnderscoreHook"
    assert "Inconsistency" not in result.stdout


@pytest.mark.slow
def test_cli_connections_test(cli: dict[str, subprocess.CompletedProcess[str]]) -> None:
    ok = cli["test-ok"]
    assert ok.returncode == 0, ok.stdout
    assert "Connection success!" in ok.stdout
    assert "Connected to Docify scenario 'Text Summary' (TEXT_SUMMARY)" in ok.stdout
    assert SUMMARY_KEY not in ok.stdout
    # (A failing test prints the hook's message; tests/airflow/test_hook.py checks it names the problem.)

    # Testing a connection reads the scenario only: nothing was run (or billed).
    seen = json.loads(cli["emulator"].stdout)
    assert seen == {"runs_started": 0, "endpoints": ["info"]}
