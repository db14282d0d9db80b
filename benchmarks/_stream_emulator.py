"""The emulator process of the stream load harness (``_streams.py``): the emulator a ``Plan`` needs, run
in a child process of its own so that its threads, memory and CPU are not the client's.

:class:`EmulatorProcess` starts ``python benchmarks/_streams.py --emulator PLAN``; that child calls
:func:`serve_emulator`, which registers the plan's keys and scenarios (or the Dify ``long`` app's
inputs, :func:`dify_inputs`), injects each stream's fault bound to that stream's key, and answers
``stats`` on its stdin with the per-key counters (keys appear only as fingerprints) and its own
threads, memory and CPU. It exits when its stdin closes.

Apart from ``_streams.py`` (the plan and the triggerer-like loop that drives the streams) because it
runs in the other process; ``_streams.py`` imports it, never the other way round at run time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_seconds, proc_status_kb, raise_nofile_limit

if TYPE_CHECKING:
    from _streams import Plan, StreamSpec

#: The script the emulator child runs (its ``--emulator`` option calls :func:`serve_emulator`).
STREAMS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_streams.py")


DIFY_PACED_EVENTS = 7
"""Events of a ``long`` app run besides its text chunks that the emulator paces ``event_interval``
apart: workflow_started, node_started/node_finished of start, wait and end; workflow_finished
follows the last one at once."""


def dify_inputs(events: int) -> dict[str, int]:
    """Wire inputs of the emulator's ``long`` app for a run of ``events`` events in all, one every
    ``event_interval``: no silent gap (``seconds`` 0), one ``text_chunk`` per step."""
    return {"seconds": 0, "steps": max(1, events - DIFY_PACED_EVENTS - 1)}


def _load_scenario(events: int) -> Any:
    from docify_provider.testing.scenarios import Scenario

    def produce(inputs: Mapping[str, Any], files: Mapping[str, Any]) -> tuple[str, Any, list[Any]]:
        value = inputs.get("text")
        text = value.get("text", "") if isinstance(value, Mapping) else ""
        return f"done: {text}", {"echo": text}, []

    return Scenario(
        scenario_id=f"9{events:03d}",
        code=f"LOAD_{events}",
        name=f"Load stream of {events} events",
        description="Streams START, two PREPARE events, TEXT chunks and COMPLETE",
        parameters=[
            {"type": "TEXT", "label": "Text", "variable": "text", "required": False, "maxLength": 0, "description": ""}
        ],
        produce=produce,
        cost_points=1,
        latency=0.0,
        text_chunks=[f"chunk {n + 1} of {events - 4}" for n in range(events - 4)],
    )


def _fault_for(spec: StreamSpec) -> Any:
    from docify_provider.testing import Fault

    kinds: dict[str, Any] = {
        "drop_mid_stream": lambda: Fault("stream", "drop_mid_stream", after_events=3, key=spec.key),
        "error_event": lambda: Fault("stream", "error_event", key=spec.key),
        "end_without_complete": lambda: Fault("stream", "end_without_complete", after_events=4, key=spec.key),
        "status_503": lambda: Fault("stream", "status", status=503, key=spec.key),
        "malformed_event": lambda: Fault("stream", "malformed_event", key=spec.key),
    }
    return kinds[str(spec.fault)]()


def docify_emulator(plan: Plan, event_interval: float, ping_interval: float | None) -> Any:
    """A Docify emulator with one scenario per stream length, the plan's keys and their faults."""
    from docify_provider.testing import DocifyEmulator

    emu = DocifyEmulator(event_interval=event_interval, ping_interval=ping_interval, default_keys=False)
    specs = (*plan.streams, plan.warmup)
    for events in sorted({s.events for s in specs}):
        emu.add_scenario(_load_scenario(events))
    for spec in {s.key: s for s in specs}.values():
        emu.add_key(spec.key, spec.scenario_code)
        if spec.fault:
            emu.inject(_fault_for(spec))
    return emu


def dify_emulator(plan: Plan, event_interval: float, ping_interval: float | None) -> Any:
    """A Dify emulator whose plan keys all run the built-in ``long`` app (see :func:`dify_inputs`)."""
    from docify_provider.testing.dify import DifyEmulator

    emu = DifyEmulator(event_interval=event_interval, ping_interval=ping_interval, default_keys=False)
    for spec in {s.key: s for s in (*plan.streams, plan.warmup)}.values():
        emu.add_key(spec.key, "long")
    return emu


def serve_emulator(plan: Plan, *, event_interval: float, ping_interval: float | None) -> None:
    """Body of the emulator child: serve ``plan`` until stdin closes; answer ``stats`` lines on stdout."""
    from docify_provider.testing.keys import fingerprint

    raise_nofile_limit()
    emu = plan.spec.emulator(plan, event_interval, ping_interval)
    specs = (*plan.streams, plan.warmup)
    peak_threads = threading.active_count()
    stop = threading.Event()

    def sample_threads() -> None:
        nonlocal peak_threads
        while not stop.wait(0.05):
            peak_threads = max(peak_threads, threading.active_count())

    with emu:
        sampler = threading.Thread(target=sample_threads, daemon=True)
        sampler.start()
        print(json.dumps({"base_url": emu.base_url}), flush=True)
        for line in sys.stdin:
            if line.strip() != "stats":
                continue
            requests = Counter(r.key_fingerprint for r in emu.requests if r.endpoint == "stream")
            stats = {
                "started": {fingerprint(s.key): emu.runs_started(s.key) for s in specs},
                "completed": {fingerprint(s.key): emu.runs_completed(s.key) for s in specs},
                "stream_requests": {fingerprint(s.key): requests.get(fingerprint(s.key), 0) for s in specs},
                "faults_unused": [f.kind for f in emu.faults if not f.exhausted],
                "peak_threads": peak_threads,
                "vmhwm_kb": proc_status_kb("VmHWM"),
                "cpu_seconds": cpu_seconds(),
            }
            print(json.dumps(stats), flush=True)
        stop.set()


class EmulatorProcess:
    """The emulator for ``plan`` in its own process: ``with EmulatorProcess(plan, ...) as emu: emu.base_url``."""

    def __init__(self, plan: Plan, *, event_interval: float, ping_interval: float | None = 0.5) -> None:
        self.plan = plan
        self.event_interval = event_interval
        self.ping_interval = ping_interval
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tmp = tempfile.TemporaryDirectory(prefix="docify-load-")

    def __enter__(self) -> EmulatorProcess:
        plan_path = os.path.join(self._tmp.name, "plan.json")
        with open(plan_path, "w") as fh:
            fh.write(self.plan.to_json())
        self._stderr: IO[str] = open(os.path.join(self._tmp.name, "emulator.err"), "w+")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                STREAMS_SCRIPT,
                "--emulator",
                plan_path,
                "--event-interval",
                str(self.event_interval),
                "--ping-interval",
                str(self.ping_interval or 0),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True).start()
        try:
            self.base_url = json.loads(self._line(60))["base_url"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def _read(self, stdout: IO[str] | None) -> None:
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self._stderr.seek(0)
            raise RuntimeError(f"the emulator process did not answer; its stderr:\n{self._stderr.read()[-3000:]}")
        return line

    def stats(self) -> dict[str, Any]:
        """The emulator's per-key counters (by key fingerprint), peak threads, memory and CPU."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        return dict(json.loads(self._line(60)))

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._stderr.close()
        self._tmp.cleanup()
