"""Accounting of a stream load run (``_streams.py``): every stream ended as its fault says, once,
and the emulator saw each run sent once and started at most once."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _streams import Outcome, Plan

#: kind -> (trigger event status, error type, runs the emulator must have started for the stream).
EXPECTED: dict[str | None, tuple[str, str | None, int]] = {
    None: ("success", None, 1),
    "malformed_event": ("success", None, 1),  # the bad event is logged and skipped; the run completes
    "drop_mid_stream": ("error", "DocifyOutcomeUnknownError", 1),
    "end_without_complete": ("error", "DocifyStreamIncompleteError", 1),
    "error_event": ("error", "DocifyRunFailedError", 1),
    "status_503": ("error", "DocifyServerError", 0),  # refused before any run was started; never re-sent
}


@dataclasses.dataclass
class Accounting:
    """Per fault kind: streams, streams that ended as expected, runs started; and every problem found."""

    rows: dict[str, dict[str, int]]
    problems: list[str]
    hung: int
    runs_started: int
    expected_started: int
    #: Run requests the emulator received beyond one per stream (a run sent twice).
    resent: int = 0


def account(plan: Plan, outcomes: Sequence[Outcome | Mapping[str, Any]], stats: Mapping[str, Any]) -> Accounting:
    """Check every stream ended accounted for, once, and was sent (and started) at most once."""
    from docify_provider.testing.keys import fingerprint

    by_index = {o["index"] if isinstance(o, Mapping) else o.index: o for o in outcomes}
    rows: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    hung = 0
    # The emulator counts per key: a key's counters are checked once, against all its streams.
    users = Counter(fingerprint(s.key) for s in plan.streams)
    checked: set[str] = set()
    for spec in plan.streams:
        kind = spec.fault or "none"
        row = rows.setdefault(kind, {"streams": 0, "as_expected": 0, "runs_started": 0, "expected_started": 0})
        row["streams"] += 1
        status, error_type, expected_started = EXPECTED[spec.fault]
        fp = fingerprint(spec.key)
        started = int(stats["started"].get(fp, 0))
        sent = int(stats["stream_requests"].get(fp, 0))
        first_of_key = fp not in checked
        checked.add(fp)
        row["runs_started"] += started if first_of_key else 0
        row["expected_started"] += expected_started
        found = by_index.get(spec.index)
        o = dataclasses.asdict(found) if dataclasses.is_dataclass(found) else dict(found or {})
        where = f"stream {spec.index} ({kind})"
        ok = True
        if not o:
            problems.append(f"{where}: no outcome")
            ok = False
        elif o["hung"]:
            hung += 1
            problems.append(f"{where}: still running at the deadline (hung)")
            ok = False
        elif o["raised"]:
            problems.append(f"{where}: the trigger raised {o['raised']}")
            ok = False
        elif o["events"] != 1:
            problems.append(f"{where}: {o['events']} trigger events instead of exactly 1")
            ok = False
        elif (o["status"], o["error_type"]) != (status, error_type):
            problems.append(
                f"{where}: ended {o['status']}/{o['error_type']}, expected {status}/{error_type}: {o['message']}"
            )
            ok = False
        elif status == "success" and not (o["run_id"] and o["session_id"]):
            problems.append(f"{where}: success without run id and session id")
            ok = False
        share = users[fp]
        whose = where if share == 1 else f"{where} and the {share - 1} others of its key"
        if first_of_key and sent != share:
            problems.append(f"{whose}: the emulator received {sent} run requests, expected {share}")
            ok = False
        if first_of_key and started != expected_started * share:
            problems.append(f"{whose}: the emulator started {started} runs, expected {expected_started * share}")
            ok = False
        row["as_expected"] += ok
    warm_fp = fingerprint(plan.warmup.key)
    if stats["started"].get(warm_fp) != 1:
        problems.append(f"warm-up stream: started {stats['started'].get(warm_fp)} runs, expected 1")
    if stats.get("faults_unused"):
        problems.append(f"faults never applied: {stats['faults_unused']}")
    return Accounting(
        rows=rows,
        problems=problems,
        hung=hung,
        runs_started=sum(r["runs_started"] for r in rows.values()),
        expected_started=sum(r["expected_started"] for r in rows.values()),
        resent=sum(max(0, int(stats["stream_requests"].get(fp, 0)) - n) for fp, n in users.items()),
    )


def accounting_table(acc: Accounting) -> Iterator[str]:
    """The accounting as printable lines, one row per fault kind."""
    names = {
        "none": "none",
        "malformed_event": "malformed event",
        "drop_mid_stream": "drop mid-stream",
        "end_without_complete": "end without COMPLETE",
        "error_event": "ERROR event",
        "status_503": "503 before response",
    }
    yield f"{'injected fault':<22}{'streams':>8}  {'must end as':<30}{'as expected':>12}{'runs started':>14}"
    for kind in ("none", *sorted(k for k in acc.rows if k != "none")):
        if kind not in acc.rows:
            continue
        row = acc.rows[kind]
        status, error_type, _ = EXPECTED[None if kind == "none" else kind]
        must = "success" if status == "success" else str(error_type)
        started = f"{row['runs_started']}/{row['expected_started']}"
        yield f"{names[kind]:<22}{row['streams']:>8}  {must:<30}{row['as_expected']:>12}{started:>14}"
    total = sum(r["streams"] for r in acc.rows.values())
    good = sum(r["as_expected"] for r in acc.rows.values())
    yield f"{'total':<22}{total:>8}  {'':<30}{good:>12}{f'{acc.runs_started}/{acc.expected_started}':>14}"
