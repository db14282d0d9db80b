"""Many stream triggers starting together in one triggerer loop: what each must do before sending, not one after another.

Before its run request a trigger reads its restart marker (what stops a restarted trigger from
paying twice) and writes it "sent", and resolves its connection. A triggerer picks up to 1,000
triggers at once; these steps used to queue: every marker call on ``asgiref``'s one thread, held
for each round trip to the supervisor, and every trigger looking its connection up again. The
channel to the supervisor is ``benchmarks/_triggerer_channel.py``'s stand-in (Airflow's real
``XCom`` calls go through it), with each answer 0.2 s away as from a supervisor process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from docify_provider.hooks.docify import DocifyHook
from docify_provider.testing import SUMMARY_KEY
from docify_provider.triggers.docify import DocifyStreamTrigger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _triggerer_channel import TriggererChannel, installed

pytestmark = pytest.mark.timeout(120)

WIRE = {"text": {"text": "Triggers hold streams. Workers do not."}, "language": {"text": "en"}}
TRIGGERS = 10


class WatchedChannel(TriggererChannel):
    """The stand-in channel, also counting the run requests the emulator had received at each
    "sent" marker write (a request must never arrive before its trigger's marker says "sent")."""

    def __init__(self, emulator: Any) -> None:
        super().__init__(round_trip=0.2)
        self.emulator = emulator
        #: Per "sent" write: (sent markers written before it, stream requests received so far).
        self.sent_writes: list[tuple[int, int]] = []
        self._marked: set[int] = set()

    def _answer(self, msg: Any) -> Any:
        sent = type(msg).__name__ == "SetXCom" and '"state": "sent"' in json.dumps(msg.value, default=str)
        if sent and msg.map_index not in self._marked:  # its first "sent" (the later ones add ids)
            self._marked.add(msg.map_index)
            received = sum(1 for r in self.emulator.requests if r.endpoint == "stream")
            self.sent_writes.append((len(self.sent_writes), received))
        return super()._answer(msg)


async def _run(trigger: DocifyStreamTrigger) -> list[Any]:
    import greenback  # as Airflow's triggerer, a portal per trigger for its sync calls

    await greenback.ensure_portal()
    return [event async for event in trigger.run()]


async def test_triggers_starting_together_read_and_write_their_markers_at_once_and_each_sends_after_its_sent_marker(
    emulator, docify_conn
):
    # The stand-in answers sync calls from the loop's thread through the trigger's greenback portal,
    # as the triggerers of Airflow 3.1+ do (3.0's has no portal).
    pytest.importorskip("greenback")
    from airflow.providers.common.compat.sdk import XCom

    conn_id = docify_conn(SUMMARY_KEY, idle_timeout=10)
    triggers = [
        DocifyStreamTrigger(
            inputs=WIRE, docify_conn_id=conn_id, dag_id="start", task_id="stream", run_id="r", map_index=i
        )
        for i in range(TRIGGERS)
    ]
    with installed(WatchedChannel(emulator)) as channel:
        for trigger in triggers:  # as each operator leaves its marker before deferring
            channel.seed(trigger.marker_key, trigger._unsent_marker(), trigger._identity())
        channel.bind()
        results = await asyncio.gather(*(_run(t) for t in triggers))

    assert [[e.payload["status"] for e in events] for events in results] == [["success"]] * TRIGGERS
    assert emulator.runs_started(SUMMARY_KEY) == TRIGGERS, "each run sent once"
    # The money rule: every request reached the emulator after its trigger's "sent" marker was stored.
    assert len(channel.sent_writes) == TRIGGERS
    assert all(received <= written for written, received in channel.sent_writes), channel.sent_writes
    reads = [entry for entry in channel.log if entry[0] == "GetXCom"]
    assert len(reads) == TRIGGERS, "one marker read each (the operator's marker is there: no old key read)"
    if hasattr(XCom, "aget_one"):  # Airflow 3.3: the triggers' requests wait at once
        assert channel.in_flight_peak >= TRIGGERS, channel.in_flight_peak
    else:  # 3.1 and 3.2: through asgiref's one thread, one round trip at a time, as before
        assert channel.in_flight_peak == 1


async def test_hooks_of_one_connection_in_a_loop_share_one_lookup_until_it_is_old(emulator, docify_conn, monkeypatch):
    """Triggers starting together look each connection up once, not once each; an edited connection
    reaches the hooks made after ``connection_reuse_seconds``; a lookup that failed is not reused."""
    from airflow.providers.common.compat.sdk import BaseHook

    lookups: list[str] = []
    if hasattr(BaseHook, "aget_connection"):  # Airflow 3.1+
        real_async = BaseHook.aget_connection.__func__  # type: ignore[attr-defined]

        async def counted_async(cls: Any, conn_id: str) -> Any:
            lookups.append(conn_id)
            return await real_async(cls, conn_id)

        monkeypatch.setattr(BaseHook, "aget_connection", classmethod(counted_async))
    else:  # 3.0: the sync lookup, in a thread
        real = BaseHook.get_connection.__func__  # type: ignore[attr-defined]

        def counted(cls: Any, conn_id: str) -> Any:
            lookups.append(conn_id)
            return real(cls, conn_id)

        monkeypatch.setattr(BaseHook, "get_connection", classmethod(counted))
    one, other = docify_conn(SUMMARY_KEY, conn_id="docify_one"), docify_conn(SUMMARY_KEY, conn_id="docify_other")

    configs = await asyncio.gather(*(DocifyHook(docify_conn_id=c).aget_config() for c in [one] * 20 + [other] * 5))
    assert sorted(lookups) == ["docify_one", "docify_other"]
    assert {c.base_url for c in configs} == {emulator.base_url}

    # Edited: the hooks of the next 30 s keep the resolved one, later hooks read the new one.
    docify_conn(SUMMARY_KEY, conn_id="docify_one", host="http://127.0.0.1:9/docify")
    assert (await DocifyHook(docify_conn_id=one).aget_config()).base_url == emulator.base_url
    monkeypatch.setattr(DocifyHook, "connection_reuse_seconds", 0.0)
    assert (await DocifyHook(docify_conn_id=one).aget_config()).base_url == "http://127.0.0.1:9/docify"
    assert lookups.count("docify_one") == 2

    # Missing: every hook asking gets the failure, and the next asks again (nothing is kept).
    monkeypatch.setattr(DocifyHook, "connection_reuse_seconds", 30.0)
    failures = await asyncio.gather(
        *(DocifyHook(docify_conn_id="docify_missing").aget_config() for _ in range(3)), return_exceptions=True
    )
    assert all("docify_missing" in str(exc) for exc in failures), failures
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOCIFY_MISSING",
        json.dumps({"conn_type": "docify", "host": emulator.base_url, "password": SUMMARY_KEY}),
    )
    assert (await DocifyHook(docify_conn_id="docify_missing").aget_config()).base_url == emulator.base_url
