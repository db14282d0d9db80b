"""``durable.batch_store`` without a DAG run: what a Variable read answers, and how ``BatchKV`` settles.

``read_variable`` is checked against the answers Airflow's supervisor gives (the ``comms`` models of
the installed line); the stores in a real task run are in ``tests/airflow/test_batch_operators.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from docify_provider.durable import batch_store
from docify_provider.durable.batch_store import BatchKV, ChunkedResults


class Channel:
    """The task's channel to its supervisor, answering every message with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[Any] = []

    def send(self, msg: Any) -> Any:
        self.sent.append(msg)
        return self.answer


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.sdk.execution_time import task_runner

    def use(answer: Any) -> Channel:
        chan = Channel(answer)
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", chan, raising=False)
        return chan

    return use


def test_a_variable_that_exists_is_read(channel: Any) -> None:
    from airflow.sdk.execution_time.comms import VariableResult

    chan = channel(VariableResult(key="k", value='{"items": {}}'))
    assert batch_store.read_variable("k") == '{"items": {}}'
    assert chan.sent[0].key == "k"


def test_only_not_found_reads_as_missing(channel: Any) -> None:
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    channel(ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"message": "no such key"}))
    assert batch_store.read_variable("k") is None


def test_any_other_answer_is_a_failed_read_never_missing(channel: Any) -> None:
    """``Variable.get(key, default=None)`` would return None here: the batch would read "nothing sent"."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    channel(ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"message": "the API server is down"}))
    with pytest.raises(RuntimeError, match="reading Variable 'k' failed"):
        batch_store.read_variable("k")


class FakeLive:
    """A ``VariableKV`` (or ``TaskStateKV``) in memory (``name`` as the real one)."""

    kind = "memory"

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def name(self, key: str) -> str:
        return f"docify_state:d:r:t:-1:{key}"

    async def get(self, key: str) -> Any:
        return self.values.get(key)

    async def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)


async def test_without_an_archive_an_open_row_keeps_the_variables() -> None:
    live = FakeLive()
    kv = BatchKV(live)  # type: ignore[arg-type]
    await kv.set("b:0", {"items": {"0": ["b", "r0"], "1": ["s", "r1"]}})
    said = await kv.settle()
    assert "stays in Airflow Variables" in said and "1 item(s)" in said
    assert "b:0" in live.values, "the row that guards a possibly billed run is kept"
    await kv.set("b:0", {"items": {"0": ["b", "r0"], "1": ["b", "r1"]}})
    assert "deleted" in await kv.settle() and live.values == {}


async def test_with_an_archive_the_state_moves_and_is_read_back() -> None:
    live, archive = FakeLive(), FakeLive()
    kv = BatchKV(live, archive)  # type: ignore[arg-type]
    await kv.set("b:0", {"items": {"0": ["s", "r0"]}})
    await kv.settle()
    assert live.values == {} and archive.values == {"b:0": {"items": {"0": ["s", "r0"]}}}
    again = BatchKV(live, archive)  # type: ignore[arg-type]
    assert await again.get("b:0") == {"items": {"0": ["s", "r0"]}}, "a cleared task finds it"
    assert await BatchKV(live, archive, first_try=True).get("b:0") is None, "try 1 reads nothing"  # type: ignore[arg-type]


async def test_chunked_results_share_a_key_per_chunk() -> None:
    live = FakeLive()
    results = ChunkedResults(BatchKV(live), "b", chunk=2)  # type: ignore[arg-type]
    for index in range(3):
        await results.put(index, {"raw": index})
    assert set(live.values) == {"b:r0", "b:r1"}
    assert live.values["b:r0"] == {"items": {"0": {"raw": 0}, "1": {"raw": 1}}}
    fresh = ChunkedResults(BatchKV(live), "b", chunk=2)  # type: ignore[arg-type]
    assert await fresh.get(2) == {"raw": 2} and await fresh.get(3) is None


async def test_an_unreadable_result_chunk_is_unknown_never_empty() -> None:
    """Read as empty, the next put would overwrite the chunk and lose the results it holds."""
    live = FakeLive()
    live.values["b:r0"] = "torn"
    results = ChunkedResults(BatchKV(live), "b", chunk=2)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="'b:r0'"):
        await results.put(1, {"raw": 1})
    with pytest.raises(LookupError, match="'b:r0'"):
        await results.get(0)
    assert live.values["b:r0"] == "torn", "left as it was"


async def test_batch_inputs_read_what_main_wrote_and_keep_its_key_names() -> None:
    """A trigger deferred by an earlier release resumes on this one: ``<key>:in<n>``, lists of 200 items."""
    from docify_provider.triggers.batch_plans import BatchInputs

    live = FakeLive()
    items = [{"text": str(i)} for i in range(450)]
    live.values.update({f"b:in{n}": {"items": items[n * 200 : (n + 1) * 200]} for n in range(3)})
    assert await BatchInputs(BatchKV(live), "b").read(450) == items  # type: ignore[arg-type]
    again = FakeLive()
    await BatchInputs(BatchKV(again), "b").write(items)  # type: ignore[arg-type]
    assert again.values == live.values, "written as the earlier release wrote them"
    del again.values["b:in1"]
    with pytest.raises(LookupError, match="'b:in1' are missing"):
        await BatchInputs(BatchKV(again), "b").read(450)  # type: ignore[arg-type]
    again.values["b:in1"] = {"items": {"0": {}}}
    with pytest.raises(LookupError, match="unreadable as 'b:in1'"):
        await BatchInputs(BatchKV(again), "b").read(450)  # type: ignore[arg-type]
    await BatchInputs(BatchKV(again), "b").delete(450)  # type: ignore[arg-type]
    assert again.values == {}
