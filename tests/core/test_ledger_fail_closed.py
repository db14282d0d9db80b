"""The bought-once ledger fails closed: a task that cannot read or write its own state sends nothing.

The task state lives behind the Execution API; a hiccup there must not read as "nothing was
bought" (a retry would pay again) nor let a run go out unguarded (a later retry could not know it
was sent). The store here is Airflow's real ``task_state_store``, wrapped by a ``pre_execute``
hook so that one call fails the way an Execution API error does; everything else is the real task
runner and the emulator's run counter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import console_text, needs_task_state_store, new_dag, run_dag
from docify_provider.operators.docify import DocifyRunScenarioOperator, DocifyStreamScenarioOperator
from docify_provider.testing import INVOICE_KEY
from docify_provider.testing.samples import SAMPLE_PNG as PNG

pytestmark = [pytest.mark.timeout(120), needs_task_state_store]


class _FlakyStore:
    """The real store, with reads (``fail="get"``) or writes (``fail="set"``) failing on given tries."""

    def __init__(self, store: Any, try_number: int, fail: str, on_tries: set[int]) -> None:
        self.store, self.try_number, self.fail, self.on_tries = store, try_number, fail, on_tries

    def _maybe_fail(self, op: str) -> None:
        if op == self.fail and self.try_number in self.on_tries:
            raise RuntimeError("Execution API answered 503 Service Unavailable")

    def get(self, key: str) -> Any:
        self._maybe_fail("get")
        return self.store.get(key)

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        self._maybe_fail("set")
        self.store.set(key, value, **kwargs)

    def delete(self, key: str) -> None:
        self.store.delete(key)


def _flaky(fail: str, on_tries: set[int]) -> Any:
    def pre_execute(context: Any) -> None:
        context["task_state_store"] = _FlakyStore(context["task_state_store"], context["ti"].try_number, fail, on_tries)

    return pre_execute


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "acme_corp.png"
    image.write_bytes(PNG)
    return image


@pytest.mark.parametrize("mode", ["blocking", "deferred"])
def test_a_retry_that_cannot_read_its_state_does_not_buy_again(docify_conns, tmp_path, capfd, mode):
    emu = docify_conns
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("try 1 wants a folder here")
    kwargs: dict[str, Any] = {
        "task_id": "ocr",
        "inputs": {"invoice_image": str(_image(tmp_path))},
        # Try 1 buys the run, then fails storing its attachments: its result is in the state.
        "attachments_to": str(blocker / "sub"),
        "retries": 1,
        "pre_execute": _flaky("get", {2}),
    }
    with new_dag(f"ledger_read_{mode}") as dag:
        if mode == "blocking":
            DocifyRunScenarioOperator(**kwargs)
        else:
            DocifyStreamScenarioOperator(deferrable=True, **kwargs)
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("ocr") == "failed" and out.try_number("ocr") == 2
    # Before the ledger failed closed, try 2 read the failure as "nothing bought" and paid again.
    assert emu.runs_started(INVOICE_KEY) == 1
    assert "Cannot read this task's state" in logs and "nothing is sent" in logs


@pytest.mark.parametrize("mode", ["blocking", "streaming", "deferred"])
def test_a_try_that_cannot_write_its_pending_record_sends_nothing(docify_conns, tmp_path, capfd, mode):
    emu = docify_conns
    kwargs: dict[str, Any] = {
        "task_id": "ocr",
        "inputs": {"invoice_image": str(_image(tmp_path))},
        "pre_execute": _flaky("set", {1}),
    }
    with new_dag(f"ledger_write_{mode}") as dag:
        if mode == "blocking":
            DocifyRunScenarioOperator(**kwargs)
        else:
            DocifyStreamScenarioOperator(deferrable=mode == "deferred", **kwargs)
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("ocr") == "failed"
    assert emu.runs_started(INVOICE_KEY) == 0
    assert "Cannot write this task's state" in logs and "the run is not sent" in logs
