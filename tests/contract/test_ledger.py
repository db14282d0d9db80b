"""The bought-once ledger (``docify_provider/durable/ledger.py``), the same rules on every backend.

One record per task instance under the backend's key: intent (written before a run is sent; a
failed write stops the try), the server's run ids once known, the bought result the moment it
arrives; a retry reads it first and a read that fails is "unknown", never "nothing bought". The
first tests drive ``RunLedger`` over a store that can fail (no Airflow run); the others run real
``dag.test()`` tasks of each backend against its emulator, through Airflow's real
``task_state_store`` (wrapped by a ``pre_execute`` hook so that one call fails the way an
Execution API error does) or, before Airflow 3.3, the Variable it falls back to.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_helpers import console_text, needs_task_state_store, new_dag, run_dag
from docify_provider._core.errors import LedgerError
from docify_provider.docify.files import safe_file_name
from docify_provider.durable.ledger import RunLedger
from docify_provider.durable.state import TaskState

pytestmark = pytest.mark.timeout(120)

LOG = logging.getLogger(__name__)


class Store:
    """A ``task_state_store`` in memory whose reads or writes fail on demand (as the Execution API can)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.fail: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def _call(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        if op in self.fail:
            raise RuntimeError("Execution API answered 503 Service Unavailable")

    def get(self, key: str) -> Any:
        self._call("get", key)
        return self.values.get(key)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self._call("set", key)
        self.values[key] = value

    def delete(self, key: str) -> None:
        self._call("delete", key)
        self.values.pop(key, None)


def _ledger(contract: Any, store: Store, try_number: int = 2) -> RunLedger:
    ti = SimpleNamespace(try_number=try_number, dag_id="d", run_id="r", task_id="t", map_index=-1)
    state = TaskState({"task_state_store": store, "ti": ti}, LOG)  # type: ignore[arg-type]
    return RunLedger(state, contract.state_key, legacy=contract.legacy_state_keys)


def test_a_run_is_intended_then_started_then_bought_in_one_key(contract: Any) -> None:
    store = Store()
    ledger = _ledger(contract, store)
    ids = {name: f"{name}-1" for name in contract.run_ids}

    pending = ledger.intend()
    assert store.values == {contract.state_key: {"pending": pending}} and pending["try_number"] == 2
    ledger.started(**ids)
    ledger.started(**{name: "another" for name in contract.run_ids})  # once each: the first id stays
    assert store.values[contract.state_key]["pending"] == {**pending, **ids}
    assert ledger.read() == {"pending": {**pending, **ids}, "key": contract.state_key}

    ledger.bought({"raw": "answer"}, **ids)
    (record,) = store.values.values()
    assert set(record) == {"result"} and record["result"]["raw"] == {"raw": "answer"}
    assert {k: record["result"][k] for k in ids} == ids and record["result"]["try_number"] == 2
    assert ledger.read()["result"] == record["result"]

    ledger.forget()
    assert store.values == {} and ledger.read() == {}


def test_a_ledger_that_cannot_be_read_fails_closed(contract: Any) -> None:
    store = Store()
    store.fail = {"get"}
    with pytest.raises(LedgerError, match="nothing is sent") as caught:
        _ledger(contract, store).read()
    assert contract.state_key in str(caught.value)


def test_an_intent_that_cannot_be_written_stops_the_try_and_a_bought_result_does_not(contract: Any) -> None:
    store = Store()
    ledger = _ledger(contract, store)
    store.fail = {"set"}
    with pytest.raises(LedgerError, match="the run is not sent"):
        ledger.intend()
    # Once a run is bought, losing the guard must not lose the result the task holds: logged, not raised.
    ledger.bought({"raw": "answer"})


def test_try_one_reads_nothing(contract: Any) -> None:
    store = Store()
    store.fail = {"get"}  # a read would raise: try 1 must not read at all
    assert _ledger(contract, store, try_number=1).read() == {}
    assert store.calls == []


@pytest.mark.backends("docify")  # the Dify backends have had one ledger key from the start
def test_a_record_of_an_earlier_build_is_honoured_then_superseded(contract: Any) -> None:
    store = Store()
    (part, old_key), *_ = contract.legacy_state_keys
    store.values[old_key] = {"raw": "old"}
    ledger = _ledger(contract, store)
    assert ledger.read() == {part: {"raw": "old"}, "key": old_key}
    ledger.intend()
    assert set(store.values) == {contract.state_key}, "the new record replaces every old key"


# -- real task runs ---------------------------------------------------------------------------------


def _blocked_then(tmp_path: Path, good: Path) -> str:
    """An ``attachments_to`` template: try 1 cannot store there (a file where a folder must be), try 2 can."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the first try wants a folder")
    return f"{{{{ '{blocker / 'sub'}' if ti.try_number == 1 else '{good}' }}}}"


@pytest.mark.airflow_line_for(
    "docify",
    "dify",
    "dify_openapi",
    reason="the ledger's store: task_state_store on 3.3+, a Variable per task instance before",
)
def test_failed_post_processing_is_retried_without_buying_again(contract, mode, backend_emu, tmp_path, capfd):
    good = tmp_path / "good"
    with new_dag(f"{contract.name}_bought_once_{mode}") as dag:
        contract.operator(
            mode, "files", tmp_path, task_id="run", attachments_to=_blocked_then(tmp_path, good), retries=1
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "success", logs[-4000:]
    assert out.try_number("run") == 2
    assert contract.runs(backend_emu, "files") == 1
    assert contract.uploads(backend_emu) == 1
    assert contract.reused in logs
    (file,) = out.xcom("run")["files"]
    folder = good / safe_file_name(out.dag_id) / safe_file_name(out.run_id) / "run"
    assert Path(file["path"]).parent == folder
    assert Path(file["path"]).stat().st_size == file["file_size"]


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


@needs_task_state_store
@pytest.mark.backends(modes=("blocking", "deferred"))
def test_a_retry_that_cannot_read_its_state_does_not_buy_again(contract, mode, backend_emu, tmp_path, capfd):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("try 1 wants a folder here")
    with new_dag(f"{contract.name}_ledger_read_{mode}") as dag:
        # Try 1 buys the run, then fails storing its files: its result is in the state.
        contract.operator(
            mode,
            "files",
            tmp_path,
            task_id="run",
            attachments_to=str(blocker / "sub"),
            retries=1,
            pre_execute=_flaky("get", {2}),
        )
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "failed" and out.try_number("run") == 2
    # Before the ledger failed closed, try 2 read the failure as "nothing bought" and paid again.
    assert contract.runs(backend_emu, "files") == 1
    assert "Cannot read this task's state" in logs and "nothing is sent" in logs


@needs_task_state_store
def test_a_try_that_cannot_write_its_pending_record_sends_nothing(contract, mode, backend_emu, tmp_path, capfd):
    with new_dag(f"{contract.name}_ledger_write_{mode}") as dag:
        contract.operator(mode, "files", tmp_path, task_id="run", pre_execute=_flaky("set", {1}))
    out = run_dag(dag)
    logs = console_text(capfd)

    assert out.state("run") == "failed"
    assert contract.runs(backend_emu, "files") == 0
    assert "Cannot write this task's state" in logs and "the run is not sent" in logs
