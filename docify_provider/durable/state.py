"""Where a run operator keeps what must survive a failed try: the bought result and the pending marker.

A run costs money and is not idempotent, so a retry must find (a) the result an earlier try
already bought and (b) a note that an earlier try sent a run whose answer never came. The place
that survives tries differs by Airflow version:

* Airflow 3.3+: the task instance's ``task_state_store`` (``context["task_state_store"]``), kept
  with ``NEVER_EXPIRE`` so clearing a successful task redoes only post-processing. Clearing the
  task's state (or ``force_rerun=True``) buys a new run.
* Airflow 3.0-3.2: there is no per-task store, and a task's XComs are wiped when the next try
  starts. The best remaining place is an Airflow Variable per task instance and key,
  ``docify_state:<dag_id>:<run_id>:<task_id>:<map_index>:<key>`` (hashed if longer than
  Variable keys may be). It is deleted once the task succeeds, so Variables do not pile up with
  one entry per document; deleting it by hand (``airflow variables delete ...``) is the way to
  clear the state there.

It fails closed. A read that fails raises ``LedgerError``: not being able to read our own state is
"unknown", never "nothing stored", so a retry cannot buy again because the Execution API hiccuped.
A write marked ``must`` (the pending marker, written before a run is sent) raises the same way, so
nothing is sent unguarded. Other writes (the bought result, the run ids) are logged and not fatal:
losing the guard must not lose the result the task is holding.

Try 1 reads nothing (``TaskState.may_hold_state`` is False): both stores are scoped to one task
instance of one DAG run, and Airflow 3 never runs a task instance's try 1 twice. The scheduler (and
``dag.test()``) increment ``try_number`` every time a task instance is scheduled, except when it
resumes from ``up_for_reschedule``; clearing a task keeps its ``try_number`` (Airflow >= 2.10), so
a cleared task's next try is 2 or more. A new DAG run starts from empty state: ``task_state_store``
rows belong to the DAG run's row and are deleted with it. (Variables are named by ``run_id``, so a
failed task's Variable outlives a deleted DAG run; try 1 of a new DAG run with the same ``run_id``
does not see it.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from docify_provider._core.errors import LedgerError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Variable keys are limited to 250 characters in the metadata database.
_MAX_VARIABLE_KEY = 250
VARIABLE_PREFIX = "docify_state"


class _Store(Protocol):
    #: How the user knows the store, for messages.
    kind: str
    #: False when a value must be deleted once the task succeeds (nothing expires it).
    keeps_after_success: bool

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class _TaskStateStore:
    """``task_state_store`` (Airflow 3.3+), values kept until the task's state is cleared."""

    kind = "task_state_store"
    keeps_after_success = True

    def __init__(self, store: Any) -> None:
        self.store = store
        self.retention: Any = None
        with contextlib.suppress(ImportError):
            from airflow.sdk.execution_time.context import NEVER_EXPIRE

            self.retention = NEVER_EXPIRE

    def get(self, key: str) -> Any:
        return self.store.get(key)

    def set(self, key: str, value: Any) -> None:
        if self.retention is None:  # pragma: no cover - a 3.3 pre-release without retention
            self.store.set(key, value)
        else:
            self.store.set(key, value, retention=self.retention)

    def delete(self, key: str) -> None:
        self.store.delete(key)


def variable_key(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> str:
    """The Variable that holds ``key`` for one task instance (Airflow < 3.3)."""
    full = f"{VARIABLE_PREFIX}:{dag_id}:{run_id}:{task_id}:{map_index}:{key}"
    if len(full) <= _MAX_VARIABLE_KEY:
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:32]
    return f"{VARIABLE_PREFIX}:{dag_id[:80]}:{task_id[:80]}:{digest}:{key}"[:_MAX_VARIABLE_KEY]


class _VariableStore:
    """Airflow Variables, one per task instance and key: the fallback before Airflow 3.3."""

    kind = "Airflow Variable"
    keeps_after_success = False

    def __init__(self, ti: Any) -> None:
        self.ti = ti

    def variable_name(self, key: str) -> str:
        map_index = getattr(self.ti, "map_index", -1)
        return variable_key(
            str(self.ti.dag_id), str(self.ti.run_id), str(self.ti.task_id), -1 if map_index is None else map_index, key
        )

    def get(self, key: str) -> Any:
        from airflow.sdk import Variable

        return Variable.get(self.variable_name(key), default=None, deserialize_json=True)

    def set(self, key: str, value: Any) -> None:
        from airflow.sdk import Variable

        Variable.set(
            self.variable_name(key), value, serialize_json=True, description="airflow-provider-docify task state"
        )

    def delete(self, key: str) -> None:
        from airflow.sdk import Variable

        Variable.delete(self.variable_name(key))


class TaskState:
    """The task instance's durable state for the run operators, whichever store this Airflow has."""

    def __init__(self, context: Context, log: logging.Logger | Any) -> None:
        self.log = log
        ctx = cast("Mapping[str, Any]", context)
        store = ctx.get("task_state_store")
        ti = ctx.get("ti") or ctx.get("task_instance")
        self.try_number: int | None = getattr(ti, "try_number", None)
        self.store: _Store | None
        if store is not None:
            self.store = _TaskStateStore(store)
        elif ti is not None and getattr(ti, "run_id", None) is not None:
            self.store = _VariableStore(ti)
            self.log.info(
                "This Airflow has no task_state_store (Airflow 3.3+): what keeps a retry from paying "
                "twice is kept in an Airflow Variable of this task instance (%s...), deleted on success",
                self.store.variable_name(""),
            )
        else:  # pragma: no cover - a context with no task instance (not a real task run)
            self.store = None

    @property
    def may_hold_state(self) -> bool:
        """False on try 1, whose task instance cannot have stored anything yet (module docstring)."""
        if self.store is None:
            return False
        try:
            return self.try_number is None or int(self.try_number) > 1
        except (TypeError, ValueError):  # pragma: no cover - not a real task instance
            return True

    @property
    def where(self) -> str:
        return "nowhere" if self.store is None else self.store.kind

    def describe(self, key: str) -> str:
        """Where ``key`` lives, as a user must name it to clear it."""
        name = getattr(self.store, "variable_name", None)
        if name is None:
            return f"{self.where} key {key!r}"
        return f"{self.where} key {key!r}: Variable {name(key)!r}"

    def get(self, key: str, *, must: bool = True) -> Any:
        """The stored value, or None when nothing is stored.

        A failed read raises ``LedgerError`` (``must``) or, once a run is bought and only
        bookkeeping is left, is logged and read as None (``must=False``).
        """
        if self.store is None:
            return None
        try:
            return self.store.get(key)
        except Exception as exc:
            if must:
                raise LedgerError(
                    f"Cannot read this task's state ({self.describe(key)}): {type(exc).__name__}: {exc}. "
                    "Whether an earlier try already sent or bought a run is unknown, so nothing is sent; "
                    "the task fails and its next try reads again."
                ) from exc
            self.log.warning("Could not read %r from the %s", key, self.where, exc_info=True)
            return None

    def set(self, key: str, value: Any, *, must: bool = False) -> None:
        """Store ``value``; a failure raises ``LedgerError`` when ``must`` (before a run is sent), else is logged."""
        if self.store is None:
            return
        try:
            self.store.set(key, value)
        except Exception as exc:
            if must:
                raise LedgerError(
                    f"Cannot write this task's state ({self.describe(key)}): {type(exc).__name__}: {exc}. "
                    "Without it a retry could not know that this try sent a run, so the run is not sent; "
                    "the task fails and its next try starts again."
                ) from exc
            self.log.warning("Could not write %r to the %s", key, self.where, exc_info=True)

    def delete(self, key: str) -> None:
        if self.store is None:
            return
        try:
            self.store.delete(key)
        except Exception:
            self.log.warning("Could not delete %r from the %s", key, self.where, exc_info=True)

    def succeeded(self, *keys: str) -> None:
        """The task is done: drop what only a retry needed, where the store would keep it forever."""
        if self.store is not None and not self.store.keeps_after_success:
            for key in keys:
                self.delete(key)
