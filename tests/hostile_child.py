"""Child process for ``test_hostile_responses.py``: one hostile download or stream, with its peak memory.

Why a separate process: the emulator serving the hostile response runs in the test process, and
pytest, Airflow and earlier tests have already grown that process's heap. Here the only work after
the warm-up is the operation under test, so the peak resident size (VmHWM, reset after the warm-up
through ``/proc/self/clear_refs``) minus the resident size before it is what the provider held.

    python tests/hostile_child.py MODE SPEC_JSON

MODE is ``download`` (``DocifyHook.download_file``), ``stream`` (``DocifyHook.stream_scenario``,
the worker path) or ``trigger`` (``DocifyStreamTrigger.run``, the triggerer path). Connections come
from the ``AIRFLOW_CONN_*`` variables the test set. One JSON line is printed: ``rss_before_kb``,
``peak_kb``, and ``result`` or ``error_type`` + ``message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

# The peak-memory helpers the benchmarks use, so both measure memory the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _common import proc_status_kb, reset_peak_rss


def _download(spec: dict[str, Any]) -> Any:
    from docify_provider.docify.errors import DocifyError
    from docify_provider.hooks.docify import DocifyHook

    hook = DocifyHook(spec["conn_id"])
    warm = spec.get("warmup")
    if warm:
        # The same code path, cut short by max_bytes: imports, the HTTP client and the file sink warm up.
        with contextlib.suppress(DocifyError):
            hook.download_file(warm["file"], warm["to"], max_bytes=warm["max_bytes"])
    yield_point()
    return str(hook.download_file(spec["file"], spec["to"], max_bytes=spec.get("max_bytes")))


def _stream(spec: dict[str, Any]) -> Any:
    from docify_provider.hooks.docify import DocifyHook

    for event in DocifyHook(spec["warm_conn"]).stream_scenario(spec["inputs"]):
        pass
    yield_point()
    return [event.type for event in DocifyHook(spec["conn_id"]).stream_scenario(spec["inputs"])]


def _trigger(spec: dict[str, Any]) -> Any:
    from docify_provider.triggers.docify import DocifyStreamTrigger

    async def first_event(conn_id: str) -> dict[str, Any]:
        trigger = DocifyStreamTrigger(inputs=spec["wire"], docify_conn_id=conn_id, user="hostile-child")
        events = [event.payload async for event in trigger.run()]
        return {"events": len(events), **events[0]}

    warm = asyncio.run(first_event(spec["warm_conn"]))
    if warm.get("status") != "success":
        raise RuntimeError(f"warm-up trigger failed: {warm}")
    yield_point()
    return asyncio.run(first_event(spec["conn_id"]))


_BEFORE: dict[str, int] = {}


def yield_point() -> None:
    """Mark the end of the warm-up: remember the resident size and restart the peak from it."""
    _BEFORE["rss"] = proc_status_kb("VmRSS")
    reset_peak_rss()


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    out: dict[str, Any] = {}
    try:
        out["result"] = {"download": _download, "stream": _stream, "trigger": _trigger}[mode](spec)
    except Exception as exc:
        out["error_type"] = type(exc).__name__
        out["message"] = str(exc)
    out["rss_before_kb"] = _BEFORE.get("rss")
    out["peak_kb"] = proc_status_kb("VmHWM")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
