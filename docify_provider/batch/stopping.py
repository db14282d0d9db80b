"""Stop a batch's runs that were started and are not settled: the one rule, no Airflow (issue 20).

Who calls it: a batch trigger that is killed (``triggers.batch.BatchTrigger.on_kill``: the task was
cleared or marked failed while deferred) and a batch that meets ``execution_timeout``
(``operators.batch_timeout``: deferred, the worker resumed with the trigger's timeout; on the
worker, ``AirflowTaskTimeout``). A run left going would be billed with nobody watching it.

What it does, per ledger row still "sent" (``items.SENT``):

* a backend that cannot stop its runs (Docify has no stop endpoint): nothing is stopped; the item
  is reported as unknown, never re-sent (its run may have been billed);
* a Dify run whose task id never arrived: it cannot be stopped; reported unknown (a retry
  re-attaches by its run id when there is one);
* else the stop is sent and what the run became is read back (the clients' ``stop_task``, bounded:
  a few reads of the run). One log line per run. Only a run the server **shows** ended stopped or
  failed is settled (``settle``): its row becomes ``FAILED`` with an error that says it was stopped,
  so a retry sends the item again, as it does any failed item: that is a new, paid run, but the
  server confirmed the old one is over. A run seen succeeded, paused or still going, or whose stop
  failed, keeps its row: a retry re-attaches to it (and reuses its result), never pays again.

``settle`` is False for a killed trigger: it is not the end of the try's ledger (a trigger
re-created from it re-attaches to the stopped runs and reports them failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from docify_provider.batch.backends import BatchBackend
from docify_provider.batch.items import SENT, ItemLedger

#: Statuses of a run the server shows over without a result: a stop that took (or a failure).
_OVER = ("stopped", "failed")


@dataclasses.dataclass
class Stops:
    """What stopping found, by item index.

    ``stopped``: the runs the server shows stopped (the error each item is reported with);
    ``left``: the other items sent and not settled, as ``[status, error]`` for the report
    (``BatchRunner(reported=...)``): unknown, or paused.
    """

    stopped: dict[int, str] = dataclasses.field(default_factory=dict)
    left: dict[int, list[str]] = dataclasses.field(default_factory=dict)


async def stop_unsettled(
    ledger: ItemLedger,
    backend: BatchBackend,
    client_factory: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    *,
    count: int,
    user: str | None,
    log: Any,
    why: str,
    settle: bool,
) -> Stops:
    """Stop every run of ``ledger``'s ``count`` items that is sent and not settled (module docstring).

    ``why`` starts each log line and error (``"Batch trigger killed"``, ``"execution_timeout"``).
    """
    stops = Stops()
    going = {index: row for index in range(count) if (row := ledger.row(index)) and row["state"] == SENT}
    label, noun = backend.policy.label, backend.policy.id_noun
    if not backend.can_stop:
        if going:
            log.warning(
                "%s with %d %s run(s) sent and not settled; %s runs cannot be stopped", why, len(going), label, label
            )
        for index, row in going.items():
            named = f" ({noun} {row['run_id']})" if row["run_id"] else ""
            stops.left[index] = [
                "unknown",
                f"in flight at {why}{named}: {label} runs cannot be stopped and its outcome was not seen; it is not "
                "re-sent (it may have been billed)",
            ]
        return stops
    stoppable = {index: row for index, row in going.items() if row["task_id"]}
    for index, row in going.items():
        if index not in stoppable:
            follow = "a retry re-attaches to it by its run id" if row["run_id"] else "it is not re-sent"
            stops.left[index] = [
                "unknown",
                f"in flight at {why} before its {label} task id arrived, so not stopped; {follow}",
            ]
    if not going:
        return stops
    log.warning(
        "%s: stopping %d %s run(s) left going (%d more sent without a task id yet)",
        why,
        len(stoppable),
        label,
        len(going) - len(stoppable),
    )
    if not stoppable:
        return stops

    async def stop(client: Any, index: int, row: Mapping[str, Any]) -> None:
        task_id, run_id = row["task_id"], row["run_id"]
        try:
            run = await backend.stop(client, run_id, task_id, user=user)
        except Exception as exc:
            log.warning("Stopping %s task %s (run %s) failed: %s", label, task_id, run_id, exc)
            stops.left[index] = [
                "unknown",
                f"the stop at {why} failed ({exc}); the run may go on: a retry re-attaches to it",
            ]
            return
        status = getattr(run, "status", None)
        if status in _OVER:
            log.info("Stopped %s task %s (run %s): it is now %s", label, task_id, run_id, status)
            error = f"stopped at {why}: {label} run {run_id} is {status}; a retry sends this item again (a new run)"
            stops.stopped[index] = error
            if settle:
                await ledger.forget(index, error=error, run_id=run_id)
            return
        seen = f"it is still {status}" if status else "what it became could not be read"
        log.warning("Asked %s to stop task %s (run %s): %s", label, task_id, run_id, seen)
        if status == "paused":
            stops.left[index] = [
                "paused",
                f"{label} run {run_id} is paused for human input, which the stop at {why} cannot reach; a retry "
                "re-attaches to it",
            ]
        elif status:
            stops.left[index] = [
                "unknown",
                f"{label} run {run_id} was {status} after the stop at {why}: a retry re-attaches to it (no new run)",
            ]
        else:
            stops.left[index] = [
                "unknown",
                f"stop sent at {why}; {label} run {run_id} not seen ending: a retry re-attaches to it (no new run)",
            ]

    async with client_factory() as client:
        await asyncio.gather(*(stop(client, index, row) for index, row in stoppable.items()))
    return stops


__all__ = ["Stops", "stop_unsettled"]
