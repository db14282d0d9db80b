"""The Dify operators in real Airflow runs (``dag.test()``) against the Dify emulator over 127.0.0.1.

Nothing of ours is mocked; ``emu.runs_started`` counts the runs the emulator started (= billed).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, needs_task_state_store, new_dag, run_dag
from docify_provider.operators.dify import (
    DifyRunWorkflowOperator,
    DifyStreamWorkflowOperator,
    DifyUploadFileOperator,
)
from docify_provider.testing.dify import TEXT_APP_KEY
from docify_provider.testing.faults import Fault

pytestmark = pytest.mark.timeout(120)

TEXT = {"topic": "Airflow and Dify", "tone": "formal"}


def test_blocking_524_is_recovered_with_one_run(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("run", "timeout_after_start", status=524))
    with new_dag("dify_524") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


def test_stream_closed_silently_is_reattached(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("stream", "end_without_complete", after_events=2))
    with new_dag("dify_reattach") as dag:
        DifyStreamWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


def test_failed_run_fails_the_task(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("run", "failed_run", message="model exploded"))
    with new_dag("dify_failed") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "failed"
    assert "model exploded" in console_text(capfd)


def test_pause_fail_names_the_form(dify_conns, capfd):
    with new_dag("dify_pause_fail") as dag:
        DifyStreamWorkflowOperator(
            task_id="run", dify_conn_id="dify_human", inputs={"topic": "x"}, validate=False, on_pause="fail"
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "failed"
    assert "DifyPausedError" in text and "paused for human input" in text


def test_upload_operator(dify_conns, tmp_path):
    source = tmp_path / "note.txt"
    source.write_text("hello dify")
    with new_dag("dify_upload") as dag:
        DifyUploadFileOperator(task_id="up", dify_conn_id="dify_document", source=str(source))
    outcome = run_dag(dag)
    assert outcome.dag_state == "success"
    xcom = outcome.xcom("up")
    assert xcom["id"] and xcom["name"] == "note.txt"


# -- helpers for the tests below ------------------------------------------------------------------------

LONG = "app-EmuLongWorkflow000000003"
DOCUMENT = "app-EmuDocumentWorkflow00002"


def _conn(monkeypatch: Any, emu: Any, conn_id: str, key: str, **extra: Any) -> str:
    """One more ``dify`` connection to the emulator (fast polling and recovery unless overridden)."""
    from airflow_helpers import conn_json

    extras = {"idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10, "poll_interval": 0.1, **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(emu.base_url, key, "dify", **extras))
    return conn_id


def _document(folder: Any, name: str = "notes.txt", text: str = "quarterly notes") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _blocked_then(tmp_path: Any, good: Any) -> str:
    """An ``attachments_to`` template: try 1 cannot store there (a file where a folder must be), try 2 can."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the first try wants a folder")
    return f"{{{{ '{blocker / 'sub'}' if ti.try_number == 1 else '{good}' }}}}"


def _operator(mode: str, **kwargs: Any) -> Any:
    if mode == "blocking":
        return DifyRunWorkflowOperator(**kwargs)
    return DifyStreamWorkflowOperator(deferrable=mode == "deferred", **kwargs)


MODES = ["blocking", "streaming", "deferred"]


# -- bought once: a retry takes the run an earlier try started -------------------------------------------


@pytest.mark.airflow_line("the run ids in the line's store (a Variable before 3.3)")
@pytest.mark.parametrize("mode", MODES)
def test_retry_reattaches_to_the_run_an_earlier_try_started(dify_conns, monkeypatch, capfd, mode):
    """Try 1 loses the run's answer after it started (the run id is known); try 2 takes its result."""
    emu = dify_conns
    if mode == "blocking":
        # The 524 comes at once; the log recovery finds the run but gives up waiting for it.
        conn = _conn(monkeypatch, emu, "dify_long_fast", LONG, recovery_timeout=0.3)
        emu.inject(Fault("run", "timeout_after_start", status=524))
        inputs: dict[str, Any] = {"seconds": 1.5}
        key = LONG
    else:
        # The stream is cut after workflow_started, and the worker's own re-attach fails (the run
        # detail answers 500, which is not retried): try 1 fails with the run going on.
        conn = "dify_text"
        emu.inject(Fault("stream", "drop_mid_stream", after_events=2))
        emu.inject(Fault("run_detail", "status", status=500))
        inputs = TEXT
        key = TEXT_APP_KEY
    with new_dag(f"dify_reattach_retry_{mode}") as dag:
        _operator(mode, task_id="run", dify_conn_id=conn, inputs=inputs, retries=1)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "success", text[-5000:]
    assert outcome.try_number("run") == 2
    assert emu.runs_started(key=key) == 1
    xcom = outcome.xcom("run")
    assert xcom["status"] == "succeeded" and xcom["outputs"]
    assert f"started Dify run {xcom['workflow_run_id']}; re-attaching to it instead of starting a new run" in text


def test_force_rerun_buys_again(dify_conns, tmp_path):
    emu = dify_conns
    with new_dag("dify_force_rerun") as dag:
        DifyRunWorkflowOperator(
            task_id="doc",
            dify_conn_id="dify_document",
            inputs={"document": _document(tmp_path)},
            attachments_to=_blocked_then(tmp_path, tmp_path / "good"),
            force_rerun=True,
            retries=1,
        )
    outcome = run_dag(dag)
    assert outcome.state("doc") == "success" and outcome.try_number("doc") == 2
    assert emu.runs_started(key=DOCUMENT) == 2


def test_a_stream_cut_before_its_first_event_is_found_in_the_logs(dify_conns, capfd):
    """The run started but its id never arrived: the logs name it, the task re-attaches, one run, try 1."""
    emu = dify_conns
    emu.inject(Fault("stream", "drop_mid_stream", after_events=0))
    with new_dag("dify_found") as dag:
        DifyStreamWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, retries=1)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "success" and outcome.try_number("run") == 1, text[-4000:]
    assert emu.runs_started(key=TEXT_APP_KEY) == 1
    assert any(r.endpoint == "logs" for r in emu.requests), "the run was found in the app's logs"


@pytest.mark.parametrize("allow_resubmit", [False, True])
def test_a_run_whose_id_never_arrived_is_sent_again_only_with_allow_resubmit(
    dify_conns, capfd, monkeypatch, allow_resubmit
):
    import json

    emu = dify_conns
    # The request was read and the connection closed: no run id, and no run in the logs either.
    conn = {"conn_type": "dify", "host": emu.base_url, "password": TEXT_APP_KEY}
    conn["extra"] = {"idle_timeout": 5, "connect_timeout": 2, "recovery_timeout": 1, "poll_interval": 0.2}
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_TEXT", json.dumps(conn))
    emu.inject(Fault("stream", "drop_before_response", times=1))
    with new_dag("dify_resubmit") as dag:
        DifyStreamWorkflowOperator(
            task_id="run", dify_conn_id="dify_text", inputs=TEXT, allow_resubmit=allow_resubmit, retries=2
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    # Without allow_resubmit try 2 looks the run up in the logs (Action.FIND) and, finding none, fails at
    # once: the third try is left unspent (it would find what try 2 found).
    assert outcome.try_number("run") == 2
    assert "appeared in the logs within recovery_timeout" in text
    if allow_resubmit:
        assert outcome.state("run") == "success", text[-4000:]
        assert emu.runs_started(key=TEXT_APP_KEY) == 1, "the first request started nothing"
        assert "allow_resubmit=True, so a new run is sent" in text
    else:
        assert outcome.state("run") == "failed"
        assert emu.runs_started(key=TEXT_APP_KEY) == 0
        assert "is left to the task's retries: the next try looks the run up in the app's logs" in text
        assert "no such run appeared within recovery_timeout" in text
        assert "Not retried (DifyOutcomeUnknownError): " in text
        assert "not re-sent" in text and "allow_resubmit=True" in text


# -- stop: execution_timeout stops the Dify task ---------------------------------------------------------


@pytest.mark.parametrize("ignored", [False, True])
def test_execution_timeout_stops_the_dify_task_and_says_what_became_of_it(dify_conns, capfd, ignored):
    from datetime import timedelta

    emu = dify_conns
    if ignored:
        emu.inject(Fault("stop", "ignore_stop"))
    with new_dag("dify_timeout_stop") as dag:
        DifyStreamWorkflowOperator(
            task_id="long",
            dify_conn_id="dify_long",
            inputs={"seconds": 8, "steps": 1},
            execution_timeout=timedelta(seconds=2),
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("long") == "failed"
    assert emu.stop_requests(key=LONG) == 1
    (run,) = emu.runs
    assert "execution_timeout: stopping Dify task" in text
    if ignored:
        assert run.status == "running"
        assert f"run {run.id} is still running: the run goes on on Dify" in text
    else:
        assert emu.wait_run_finished(run.id, timeout=5).status == "stopped"
        assert f"Dify run {run.id} is now stopped after the stop request" in text


def test_execution_timeout_of_a_blocking_run_says_it_cannot_be_stopped(dify_conns, capfd):
    from datetime import timedelta

    emu = dify_conns
    with new_dag("dify_timeout_blocking") as dag:
        DifyRunWorkflowOperator(
            task_id="long", dify_conn_id="dify_long", inputs={"seconds": 6}, execution_timeout=timedelta(seconds=1)
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("long") == "failed"
    assert emu.stop_requests() == 0
    assert "cannot be stopped; it goes on on Dify" in text


# -- human input: wait (deferred) until the form is answered ---------------------------------------------


def _answer_when_paused(emu: Any, action: str = "approve") -> Any:
    """Submit the first run's form from another thread as soon as the run has paused."""
    import threading
    import time

    def answer() -> None:
        deadline = time.monotonic() + 30
        while not emu.runs:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        run = emu.runs[0]
        emu.wait_run_status(run.id, "paused", timeout=30)
        # Answer only once the task waits: its trigger's first poll of the run detail comes after
        # the operator saw the pause and logged the form. Answering earlier (a loaded machine) can
        # resume the run before a blocking call returns, and then there is no pause to log.
        while not any(r.endpoint == "run_detail" for r in list(emu.requests)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        emu.submit_form(emu.form_token(run.id), action=action)

    thread = threading.Thread(target=answer, name="dify-form-answer", daemon=True)
    thread.start()
    return thread


@pytest.mark.airflow_line("no human-in-the-loop before 3.1: the wait falls back to an answer in Dify")
@pytest.mark.parametrize("mode", MODES)
def test_a_paused_run_waits_deferred_until_the_form_is_answered(dify_conns, capfd, mode):
    emu = dify_conns
    answering = _answer_when_paused(emu, action="approve")
    with new_dag(f"dify_human_{mode}") as dag:
        _operator(
            mode, task_id="review", dify_conn_id="dify_human", inputs={"topic": "budget"}, pause_poll_interval=0.2
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    answering.join(timeout=5)
    assert outcome.state("review") == "success", text[-5000:]
    xcom = outcome.xcom("review")
    assert xcom["status"] == "succeeded"
    assert xcom["outputs"]["decision"] == "approve" and "Approved: budget" in xcom["outputs"]["text"]
    assert emu.runs_started() == 1
    run_id = xcom["workflow_run_id"]
    assert re.search(
        rf"Dify run {run_id} paused for human input: form 'Review', actions \[Approve, Reject\], "
        r"expires \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC \(in ",
        text,
    ), text[-5000:]
    assert f"Waiting, deferred (no worker slot held), for the answer to the form 'Review' of Dify run {run_id}" in text
    if AIRFLOW_LINE >= (3, 1):
        # On 3.0 the form token (no credential: answering needs the app key too) shows in httpx's
        # request lines for the form reads and in the supervisor's debug lines; 3.1+ masks it.
        assert emu.form_token(run_id) not in text


def test_an_expired_form_fails_the_task_with_a_clear_error(dify_conns, capfd):
    emu = dify_conns
    emu.form_expiry_seconds = 1
    with new_dag("dify_human_expired") as dag:
        DifyStreamWorkflowOperator(
            task_id="review", dify_conn_id="dify_human", inputs={"topic": "budget"}, pause_poll_interval=0.2
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("review") == "failed"
    (run,) = emu.runs
    assert run.status == "paused"
    assert "DifyPausedError" in text
    assert f"Dify run {run.id} paused for human input: the form 'Review' expired at" in text
    assert "without an answer" in text


# -- output files ------------------------------------------------------------------------------------


@pytest.mark.airflow_line("Airflow 3.0 refuses None-valued XComs")
def test_output_files_land_per_task_instance_with_safe_names(dify_conns, tmp_path, capfd):
    from pathlib import Path

    from docify_provider._core.files import safe_file_name

    emu = dify_conns
    store = tmp_path / "store"
    docs = [_document(tmp_path, f"doc{i}.txt", f"document number {i}") for i in range(2)]
    # The first run's report comes with a hostile name.
    emu.inject(Fault("run", "attachment_name", name="../../etc/passwd"))
    with new_dag("dify_files") as dag:
        mapped = DifyRunWorkflowOperator.partial(
            task_id="docs", dify_conn_id="dify_document", attachments_to=str(store), emit_asset_events=True
        ).expand(inputs=[{"document": d} for d in docs])
        deferred = DifyStreamWorkflowOperator(
            task_id="deferred",
            dify_conn_id="dify_document",
            inputs={"document": docs[0]},
            attachments_to="file://" + str(store),
            deferrable=True,
        )
        mapped >> deferred
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    base = store / safe_file_name(outcome.dag_id) / safe_file_name(outcome.run_id)
    names = set()
    for task, index in (("docs", 0), ("docs", 1), ("deferred", -1)):
        (file,) = outcome.xcom(task, map_index=index)["files"]
        path = Path(file["path"].removeprefix("file://"))
        folder = base / (task if index < 0 else f"{task}-{index}")
        assert path.parent == folder, (task, index, file)
        assert path.stat().st_size == file["file_size"] and file["file_url"].startswith(emu.files_base)
        assert path.read_text().startswith("variable,filename,type")
        names.add(path.name)
    assert names == {"passwd", "report.csv"}
    assert not (tmp_path / "etc").exists()
    assert {Path(p).name for p in (str(f) for f in store.rglob("*")) if Path(p).is_file()} == names
    assert emu.runs_started(key=DOCUMENT) == 3
    if AIRFLOW_LINE < (3, 1):
        # Airflow 3.0's dag processor cannot re-serialize a DAG whose mapped task registered a new
        # asset through an alias ("issubclass() arg 1 must be a class" in detect_task_dependencies),
        # so the events of mapped tasks are lost there (seen on 3.0.6; 3.3 emits them).
        return
    events = outcome.asset_events()
    assert len(events) == 2 and all(uri.startswith("file://") for uri, _ in events)
    assert all(extra["status"] == "succeeded" and extra["workflow_run_id"] for _, extra in events)


# -- invalid inputs: one error naming every problem, before any upload or run ----------------------------


@pytest.mark.parametrize("mode", MODES)
def test_invalid_inputs_fail_before_any_upload_or_run(dify_conns, tmp_path, capfd, mode):
    emu = dify_conns
    good = _document(tmp_path, "good.txt")
    image = tmp_path / "photo.exe"
    image.write_bytes(b"MZ not a document")
    with new_dag(f"dify_invalid_{mode}") as dag:
        _operator(
            mode,
            task_id="doc",
            dify_conn_id="dify_document",
            # A valid file comes first: nothing may be uploaded all the same.
            inputs={
                "document": good,
                "attachments": [good, good, good, good],
                "summary_style": "short",
            },
        )
        _operator(
            mode,
            task_id="text",
            dify_conn_id="dify_text",
            inputs={"topic": "x" * 201, "tone": "angry"},
        )
        _operator(mode, task_id="missing", dify_conn_id="dify_document", inputs={"document": str(image)})
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.states() == {("doc", -1): "failed", ("text", -1): "failed", ("missing", -1): "failed"}
    assert emu.upload_count() == 0
    assert emu.runs_started() == 0
    # One error per task, naming each of its problems.
    blocks = _input_error_blocks(text)
    assert sorted(b.split(": ", 1)[1] for b in blocks) == ["1 problem(s)):", "2 problem(s)):", "2 problem(s)):"], blocks
    by_task = {
        "doc": next(b for b in blocks.values() if "summary_style" in b),
        "text": next(b for b in blocks.values() if "topic" in b),
        "missing": next(b for b in blocks.values() if "photo.exe" in b),
    }
    assert "attachments" in by_task["doc"]
    assert "200" in by_task["text"] and "tone" in by_task["text"] and "angry" in by_task["text"]


def _input_error_blocks(text: str) -> dict[str, str]:
    """``DifyInputError`` messages in the log: the header line and the problem lines under it."""
    lines = text.splitlines()
    blocks: dict[str, str] = {}
    for index, line in enumerate(lines):
        if "DifyInputError: Invalid Dify inputs (" in line:
            body = []
            for follow in lines[index + 1 : index + 12]:
                if not follow.strip() or follow.startswith(("20", "Traceback")) or "[DAG TEST]" in follow:
                    break
                body.append(follow)
            blocks[f"{index}: {line.split('(', 1)[1]}"] = "\n".join(body)
    return blocks


@needs_task_state_store
def test_a_blocking_run_writes_its_state_twice_the_marker_then_the_result(dify_conns, monkeypatch):
    """Each ``task_state_store`` write is an Execution API call (~12 ms under ``dag.test()``, more in a
    deployment): the pending marker before the run and the run with its result after it are the two the
    money rules need; the run's ids are not written on their own in between (the result carries them)."""
    from airflow.sdk.execution_time.context import TaskStateStoreAccessor

    writes: list[tuple[str, list[str]]] = []
    real_set = TaskStateStoreAccessor.set

    def spy(self: Any, key: str, value: Any, **kwargs: Any) -> None:
        writes.append((key, sorted(value) if isinstance(value, dict) else []))
        real_set(self, key, value, **kwargs)

    monkeypatch.setattr(TaskStateStoreAccessor, "set", spy)
    with new_dag("dify_state_writes") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT)
    out = run_dag(dag)
    assert out.state("run") == "success"
    assert len(writes) == 2, writes
    assert "pending" in writes[0][1] and "result" in writes[1][1], writes
    assert dify_conns.runs_started(TEXT_APP_KEY) == 1
