"""The app-description cache (``_core.app_cache``): each hook is one task; the emulators serve over loopback.

A hook stands for one task: a fresh ``DocifyHook`` / ``DifyHook`` per "task", the same connection.
The emulators' scenarios and apps are edited at runtime (``emulator.scenarios``, ``emu.apps``), as
someone editing the app between two tasks would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider._core.app_cache import entry_name
from docify_provider.docify.errors import DocifyBadRequestError, DocifyInputError
from docify_provider.hooks.dify import DifyHook
from docify_provider.operators.docify import DocifyStreamScenarioOperator
from docify_provider.testing import DocifyEmulator
from docify_provider.testing.dify.apps import variable
from docify_provider.testing.keys import SUMMARY_KEY

Conn = Callable[..., str]
VALID = {"text": "One sentence. Two.", "language": "en"}


def _audience(required: bool) -> dict[str, Any]:
    return {"type": "TEXT", "label": "Audience", "variable": "audience", "required": required, "maxLength": 50}


def test_a_second_task_reuses_the_description(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to, capfd: pytest.CaptureFixture[str]
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    assert make_hook(conn).prepare_inputs(VALID)["language"] == {"text": "en"}
    second = make_hook(conn)
    assert second.prepare_inputs(VALID)["language"] == {"text": "en"}
    assert len(requests_to(emulator, "info")) == 1
    assert second.description_age is not None and "read 0 s ago (info_cache_seconds=60)" in console_text(capfd)


def test_a_lapsed_copy_is_read_again(emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to) -> None:
    conn = docify_conn(SUMMARY_KEY, info_cache_seconds=0.3)
    make_hook(conn).prepare_inputs(VALID)
    make_hook(conn).prepare_inputs(VALID)
    assert len(requests_to(emulator, "info")) == 1
    time.sleep(0.4)
    third = make_hook(conn)
    third.prepare_inputs(VALID)
    assert len(requests_to(emulator, "info", 2)) == 2 and third.description_age is None


def test_zero_switches_it_off(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to, app_description_cache
):
    conn = docify_conn(SUMMARY_KEY, info_cache_seconds=0)
    for _ in range(3):
        make_hook(conn).prepare_inputs(VALID)
    assert len(requests_to(emulator, "info", 3)) == 3
    assert os.listdir(app_description_cache.folder) == []


def test_an_edited_scenario_accepts_its_new_parameter_at_once(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to, capfd: pytest.CaptureFixture[str]
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    make_hook(conn).prepare_inputs(VALID)
    emulator.scenarios["TEXT_SUMMARY"].parameters.append(_audience(required=False))
    wire = make_hook(conn).prepare_inputs({**VALID, "audience": "board"})
    assert wire["audience"] == {"text": "board"}
    assert len(requests_to(emulator, "info", 2)) == 2
    assert "do not match the scenario description read 0 s ago; reading it again" in console_text(capfd)
    # The new description is what the next task reuses.
    make_hook(conn).prepare_inputs({**VALID, "audience": "staff"})
    assert len(requests_to(emulator, "info")) == 2


def test_inputs_wrong_for_the_fresh_description_too_fail_after_one_read(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    make_hook(conn).prepare_inputs(VALID)
    hook = make_hook(conn)
    with pytest.raises(DocifyInputError, match="language") as raised:
        hook.run_scenario({"text": "x", "language": "de"})
    assert raised.value.__context__ is None  # one error in the log, not one chained to the cached copy's
    assert len(requests_to(emulator, "info", 2)) == 2 and emulator.runs_started() == 0
    assert requests_to(emulator, "run") == []


def test_a_run_the_server_refuses_drops_the_copy_and_is_not_sent_again(
    emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    make_hook(conn).prepare_inputs(VALID)
    # A new required parameter: the cached copy passes the inputs, the server refuses the run.
    emulator.scenarios["TEXT_SUMMARY"].parameters.append(_audience(required=True))
    with pytest.raises(DocifyBadRequestError):
        make_hook(conn).run_scenario(VALID)
    assert len(requests_to(emulator, "run", 1)) == 1 and emulator.runs_started() == 0
    with pytest.raises(DocifyInputError, match="audience"):  # the next task reads the scenario again
        make_hook(conn).prepare_inputs(VALID)
    assert len(requests_to(emulator, "info", 2)) == 2 and len(requests_to(emulator, "run")) == 1


def test_the_key_is_never_in_a_cache_name_file_or_log(
    emulator: DocifyEmulator,
    docify_conn: Conn,
    make_hook,
    app_description_cache,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    with caplog.at_level(logging.DEBUG):
        make_hook(conn).prepare_inputs(VALID)
        make_hook(conn).prepare_inputs(VALID)
    logged = console_text(capfd) + caplog.text
    assert "read 0 s ago" in logged
    names = os.listdir(app_description_cache.folder)
    assert names == [entry_name("docify-scenario-info", emulator.base_url, SUMMARY_KEY) + ".json"]
    with open(os.path.join(app_description_cache.folder, names[0]), encoding="utf-8") as fh:
        content = fh.read()
    assert "TEXT_SUMMARY" in content
    for text in (names[0], content, logged, repr(list(app_description_cache._memory))):
        assert SUMMARY_KEY not in text
    assert os.stat(os.path.join(app_description_cache.folder, names[0])).st_mode & 0o077 == 0


def test_a_folder_shared_with_others_is_not_used(tmp_path) -> None:
    from docify_provider._core.app_cache import AppDescriptionCache

    folder = tmp_path / "shared"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    cache = AppDescriptionCache(str(folder))
    cache.put("x", {"a": 1})
    assert os.listdir(folder) == []
    assert cache.get("x", 60) is not None  # process memory still serves this process


def test_dify_parameters_are_reused_and_read_again_for_a_new_variable(dify_conns) -> None:
    hooks = [DifyHook(dify_conn_id="dify_text") for _ in range(3)]
    try:
        hooks[0].prepare_inputs({"topic": "tea"})
        hooks[1].prepare_inputs({"topic": "tea"})
        reads = [r for r in dify_conns.requests if r.endpoint == "parameters"]
        assert len(reads) == 1
        dify_conns.apps["text"].variables.append(variable("text-input", "audience", "Audience", required=False))
        assert hooks[2].prepare_inputs({"topic": "tea", "audience": "staff"})["audience"] == "staff"
        assert len([r for r in dify_conns.requests if r.endpoint == "parameters"]) == 2
    finally:
        for hook in hooks:
            hook.close()


def test_a_deferred_run_the_server_refuses_drops_the_copy(
    airflow_env, emulator: DocifyEmulator, docify_conn: Conn, make_hook, requests_to, app_description_cache
) -> None:
    conn = docify_conn(SUMMARY_KEY)
    make_hook(conn).prepare_inputs(VALID)
    assert len(os.listdir(app_description_cache.folder)) == 1
    emulator.scenarios["TEXT_SUMMARY"].parameters.append(_audience(required=True))
    with new_dag("cache_refused_deferred") as dag:
        DocifyStreamScenarioOperator(task_id="run", docify_conn_id=conn, inputs=VALID, deferrable=True)
    outcome = run_dag(dag)
    assert outcome.state("run") == "failed" and outcome.try_number("run") == 1
    assert emulator.runs_started() == 0 and len(requests_to(emulator, "stream", 1)) == 1  # sent once, never again
    assert os.listdir(app_description_cache.folder) == []
