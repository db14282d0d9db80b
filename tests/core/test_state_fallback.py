"""Bought once on Airflow before 3.3, where tasks have no ``task_state_store``.

Airflow 3.0-3.2 cannot be installed next to the 3.3 this suite runs on, so the only thing these
tests take away is what those versions lack: a ``pre_execute`` hook removes ``task_state_store``
from the task's context (on every try, and on the deferred task's resumption). Everything else is
the real task runner, the real Variables API and the emulator's run counter. The operators must
then keep the bought result and the pending marker in an Airflow Variable, reuse them on the
next try, and drop the Variable once the task succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.durable.state import VARIABLE_PREFIX, variable_key
from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator
from docify_provider.testing import INVOICE_KEY, SUMMARY_KEY, Fault
from docify_provider.testing.samples import SAMPLE_PNG as PNG

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.airflow_line("the Variable store of Airflow < 3.3: simulated on 3.3, the real fallback on 3.0-3.2"),
]


def _as_before_airflow_3_3(context: Any) -> None:
    """What Airflow 3.0-3.2 give a task: the same context, without ``task_state_store``."""
    context.pop("task_state_store", None)


def _docify_variables() -> dict[str, str]:
    from airflow.models import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Variable).filter(Variable.key.like(f"{VARIABLE_PREFIX}:%")).all()
        return {row.key: row.val for row in rows}


@pytest.mark.parametrize("mode", ["blocking", "deferred"])
def test_result_kept_in_a_variable_is_reused_by_the_retry_then_dropped(docify_conns, tmp_path, capfd, mode):
    emu = docify_conns
    image = tmp_path / "acme_corp.png"
    image.write_bytes(PNG)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("try 1 wants a folder here")
    good = tmp_path / "good"
    kwargs: dict[str, Any] = {
        "task_id": "ocr",
        "inputs": {"invoice_image": str(image)},
        "attachments_to": f"{{{{ '{blocker / 'sub'}' if ti.try_number == 1 else '{good}' }}}}",
        "retries": 1,
        "pre_execute": _as_before_airflow_3_3,
    }
    with new_dag(f"pre33_{mode}") as dag:
        if mode == "blocking":
            DocifyRunScenarioOperator(**kwargs)
        else:
            DocifyStreamScenarioOperator(deferrable=True, **kwargs)
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("ocr") == "success"
    assert out.try_number("ocr") == 2
    assert emu.runs_started(INVOICE_KEY) == 1
    assert "no new run was bought" in logs
    (file,) = out.xcom("ocr")["files"]
    assert Path(file["path"]).is_relative_to(good)
    # Succeeded: nothing of this task instance is left among the Variables.
    assert not [k for k in _docify_variables() if f":{out.run_id}:" in k]


def test_unknown_outcome_marker_in_a_variable_fails_closed_at_once(docify_conns, capfd):
    emu = docify_conns
    emu.inject(Fault("run", "drop_before_response", run_started=True))
    with new_dag("pre33_unknown") as dag:
        DocifyRunScenarioOperator(
            task_id="run",
            docify_conn_id="docify_summary",
            inputs={"text": "Airflow runs Docify.", "language": "en"},
            retries=1,
            pre_execute=_as_before_airflow_3_3,
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "failed"
    assert out.try_number("run") == 1, "retries=1 unspent: the retry would fail closed on the marker"
    assert emu.runs_started(SUMMARY_KEY) == 1
    assert "would risk paying twice" in logs
    # The marker stays (the task failed), named so that a user can find and delete it.
    pending = variable_key(out.dag_id, out.run_id, "run", -1, "docify_state")
    # Compared without white space: Airflow 3.0 prints the message wrapped inside a rich traceback.
    assert "".join(f"Airflow Variable key 'docify_state': Variable {pending!r}".split()) in "".join(logs.split())
    assert json.loads(_docify_variables()[pending])["pending"]["try_number"] == 1


def test_long_ids_still_give_a_valid_variable_key() -> None:
    key = variable_key("d" * 200, "manual__" + "r" * 200, "t" * 200, 3, "docify_state")
    assert len(key) <= 250
    assert key.startswith(f"{VARIABLE_PREFIX}:") and key.endswith(":docify_state")
    assert key != variable_key("d" * 200, "manual__" + "r" * 200, "t" * 200, 4, "docify_state")
