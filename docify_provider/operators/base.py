"""What every backend's run operators share (not for direct use).

The default ``user`` scheme, the bought-once ledger in the task's durable state, the attachments
folder (``<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/<safe name>``) with streamed
downloads and asset events through an ``AssetAlias``, Airflow 3.0's per-key XCom push, and the
guard against Airflow 3.0 resuming a retry with the trigger event of the try that deferred.

This module is imported when DAG files are parsed: only ``airflow.sdk`` pieces at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from airflow.providers.common.compat.sdk import AssetAlias, BaseOperator

from docify_provider.durable.ledger import RunLedger
from docify_provider.durable.policy import Action, Backend, Decision, Known, decide
from docify_provider.operators.fail_fast import fails_fast

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import OutcomeUnknownError, ProviderError
    from docify_provider.durable.state import TaskState

T = TypeVar("T")
#: Default of the run operators' ``max_wait_not_started``: ten minutes of waiting after 429s, in seconds.
DEFAULT_MAX_WAIT_NOT_STARTED = 600.0
#: Example providers that register an object-storage scheme, named in the error for a missing one.
_SCHEME_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}


def outcome_known(exc: BaseException) -> bool:
    """True when ``exc`` proves no run is pending: none was started, or it ended (even in failure)."""
    from docify_provider._core.errors import ProviderError

    return isinstance(exc, ProviderError) and exc.run_settled()


def ctx(context: Context) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", context)


def context_ti(context: Context) -> Any:
    return ctx(context).get("ti") or ctx(context).get("task_instance")


def later_try(current: int | None, deferred_in: int | None) -> bool:
    try:
        return current is not None and deferred_in is not None and int(current) > int(deferred_in)
    except (TypeError, ValueError):  # pragma: no cover - not a real task instance
        return False


def map_index(context: Context) -> int:
    ti = context_ti(context)
    value = getattr(ti, "map_index", -1)
    return -1 if value is None else int(value)


def with_asset_alias(kwargs: dict[str, Any], emit_asset_events: bool, asset_alias: str) -> dict[str, Any]:
    """``kwargs`` with ``AssetAlias(asset_alias)`` added to the outlets when asset events are emitted."""
    if emit_asset_events:
        outlets = kwargs.get("outlets") or []
        outlets = list(outlets) if isinstance(outlets, (list, tuple)) else [outlets]
        if not any(isinstance(o, AssetAlias) and o.name == asset_alias for o in outlets):
            outlets.append(AssetAlias(name=asset_alias))
        kwargs["outlets"] = outlets
    return kwargs


#: ``next_method`` with which Airflow resumes a deferred task only to fail it (trigger crash or timeout).
TRIGGER_FAIL = "__fail__"


def is_trigger_timeout(error: Any) -> bool:
    """True when a ``__fail__`` resume reports the deferral's timeout (``TriggerFailureReason.TRIGGER_TIMEOUT``)."""
    return "timeout" in str(getattr(error, "value", error)).lower()


def is_task_timeout(exc: BaseException) -> bool:
    """True for Airflow's ``execution_timeout`` on the worker (``AirflowTaskTimeout``) or a deferral's
    (``TaskDeferralTimeout``); by name: their module differs across Airflow 3.x lines."""
    return type(exc).__name__ in ("AirflowTaskTimeout", "TaskDeferralTimeout")


def failure_cause(error: Any, traceback: Any) -> str:
    """What a ``__fail__`` resume says went wrong: the traceback's last line, else the error."""
    lines = [str(line).strip() for line in (traceback or []) if str(line).strip()]
    last = lines[-1].splitlines()[-1].strip() if lines else ""
    return last or str(getattr(error, "value", error) or "unknown")


def _shown(value: Any) -> str:
    """``value`` for an error message, without any ``user:password@`` part of a URL."""
    import re

    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1***@", str(value))


def open_output_target(param: str, value: Any, root: type[ProviderError]) -> None:
    """Open the filesystem of the output target ``value`` (operator parameter ``param``) or raise.

    Called before any upload or run: a storage URL whose scheme no installed provider registers
    (``memory://`` on a stock Airflow, a typo, ``s3://`` without the Amazon provider) used to fail
    only when the first output file was written, after the run had been paid for. Opening it
    means building the ``ObjectStoragePath`` and its filesystem (``.fs``), which is what the
    download does first; nothing is written. A local folder is created later, when a file arrives.
    The error is the backend's ``ConfigError`` (permanent: a retry cannot register a filesystem).
    """
    from docify_provider._core.errors import ConfigError, error_class
    from docify_provider._core.files import local_fs_path

    if local_fs_path(value) is not None:
        return
    protocol = getattr(value, "protocol", None) or str(value).partition("://")[0]
    scheme = str(protocol[0] if isinstance(protocol, (list, tuple)) else protocol)
    try:
        path = value
        if isinstance(value, str):
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            path = ObjectStoragePath(value)
        path.fs  # noqa: B018 - instantiating the filesystem is the check
    except Exception as exc:
        provider = _SCHEME_PROVIDERS.get(scheme.lower())
        hint = f"install {provider} on every worker" if provider else "install the Airflow provider that registers it"
        raise error_class(root, ConfigError)(
            f"{param}={_shown(value)!r}: cannot open the {scheme!r} storage the outputs would be written to "
            f"({type(exc).__name__}: {exc}). Nothing was uploaded or run. Either {hint}, or set {param} to a "
            "local folder or a storage URL whose scheme this Airflow registers (file:// always is; "
            "see the README's Troubleshooting)."
        ) from None


class RunOperatorBase(BaseOperator):
    """Ledger, attachments, asset events and XCom push of a backend's run operators.

    Subclasses set ``state_key`` (and ``legacy_state_keys``), ``default_asset_alias`` and
    ``policy_backend``, and provide ``hook`` (a ``ProviderHook``).
    """

    #: ``task_state_store`` key of the bought-once ledger.
    state_key: ClassVar[str]
    #: ``(("result", key), ("pending", key))`` of earlier builds, read by retries only.
    legacy_state_keys: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Name of the service in log lines.
    label: ClassVar[str] = "The service"

    #: Parameters naming where a run's outputs go; each is opened before any upload or run.
    output_targets: ClassVar[tuple[str, ...]] = ("attachments_to",)

    #: Name of the ``AssetAlias`` the backend's asset events go through unless ``asset_alias`` is given.
    default_asset_alias: ClassVar[str]
    #: This backend's batch operator, named when a run is turned away (429) for longer than allowed.
    batch_operator: ClassVar[str | None] = None

    _ledger: RunLedger | None
    hook: Any

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any] | None = None,
        user: str | None = None,
        attachments_to: Any = None,
        emit_asset_events: bool = False,
        asset_alias: str | None = None,
        validate: bool = True,
        force_rerun: bool = False,
        allow_resubmit: bool = False,
        max_wait_not_started: float = DEFAULT_MAX_WAIT_NOT_STARTED,
        **kwargs: Any,
    ) -> None:
        """The parameters every backend's run operators take (each documents them for its backend).

        ``max_wait_not_started``: seconds a run request turned away by the server (HTTP 429, "not
        started": nothing ran, nothing billed) is waited on and sent again, in all, within the
        task's ``execution_timeout``; 0 fails the task at the first 429. Checked here, at parse time.
        """
        from docify_provider._core.not_started import check_max_wait

        self.max_wait_not_started = check_max_wait(max_wait_not_started)
        asset_alias = asset_alias or self.default_asset_alias
        super().__init__(**with_asset_alias(kwargs, emit_asset_events, asset_alias))
        self.inputs = inputs
        self.user = user
        self.attachments_to = attachments_to
        self.emit_asset_events = emit_asset_events
        self.asset_alias = asset_alias
        self.validate = validate
        self.force_rerun = force_rerun
        self.allow_resubmit = allow_resubmit
        # Per try: the bought-once ledger (its pending record, keys of earlier builds to drop).
        self._ledger = None

    def ledger(self, state: TaskState) -> RunLedger:
        """This try's bought-once ledger in ``state``."""
        if getattr(self, "_ledger", None) is None or self._ledger.state is not state:  # type: ignore[union-attr]
            self._ledger = RunLedger(state, self.state_key, legacy=self.legacy_state_keys)
        return self._ledger  # type: ignore[return-value]

    def _error_root(self) -> type[ProviderError]:
        """The error family of this operator's own failures (each backend's root error class)."""
        from docify_provider._core.errors import ProviderError

        return ProviderError

    # -- the run policy -------------------------------------------------------------------------

    #: This backend in the run policy (``durable.policy``): how its runs are named, whether it can follow one.
    policy_backend: ClassVar[Backend]

    def _policy(self) -> Backend:
        """The run policy's view of this backend for the run at hand (the account API's depends on the app)."""
        return self.policy_backend

    def _decide(self, state: TaskState) -> Decision:
        """What an earlier try left, decided by the run policy: reuse, re-attach or send (logged).

        A run whose outcome is unknown raises here, before anything is uploaded or sent; a ledger
        that cannot be read raises ``LedgerError`` (both fail closed).
        """
        ledger = self.ledger(state)
        decision = self._decision(ledger, ledger.read())
        if decision.action is Action.FIND:
            decision = self._find_lost_run(state, decision)
        if decision.action is Action.UNKNOWN:
            raise self._outcome_unknown(decision.message, decision.run_id)
        if decision.message:
            (self.log.warning if decision.resubmit else self.log.info)("%s", decision.message)
        return decision

    def _decision(self, ledger: RunLedger, stored: Mapping[str, Any]) -> Decision:
        backend = self._policy()
        return decide(
            Known.from_ledger(stored, backend),
            backend,
            force_rerun=self.force_rerun,
            allow_resubmit=self.allow_resubmit,
            where=ledger.describe(str(stored.get("key") or self.state_key)),
        )

    def next_try(self, context: Context) -> tuple[Decision, str] | None:
        """What the next try will decide from the ledger as this try leaves it (read even on try 1), and
        where that state is kept; None when it cannot be read (the next try then fails closed). For
        ``fail_fast``, when this try fails with an unknown outcome."""
        from docify_provider.durable.state import TaskState

        try:
            ledger = getattr(self, "_ledger", None) or self.ledger(TaskState(context, self.log))
            stored = ledger.left()
            return self._decision(ledger, stored), ledger.describe(str(stored.get("key") or self.state_key))
        except Exception:
            return None

    def _find_lost_run(self, state: TaskState, decision: Decision) -> Decision:
        """A run may have been sent and none is named (``Action.FIND``): a backend that can look it up in
        its logs returns a REATTACH to it (or raises); any other fails closed with the decision's message."""
        return dataclasses.replace(decision, action=Action.UNKNOWN)

    def _outcome_unknown(self, message: str, run_id: str | None) -> OutcomeUnknownError:
        """This backend's ``OutcomeUnknownError`` naming the run by the field its errors use."""
        from docify_provider._core.errors import OutcomeUnknownError, error_class

        # Docify's run_id is its result's runId, not known here; Dify's errors carry the run id in both.
        dify_run = None if self._policy().id_field == "session_id" else run_id
        return error_class(self._error_root(), OutcomeUnknownError)(message, session_id=run_id, run_id=dify_run)

    def _check_output_targets(self) -> None:
        """Open every output target (``output_targets``) before anything is uploaded or paid for.

        Called at the top of each run operator's ``execute`` (templates are rendered by then).
        """
        for param in self.output_targets:
            value = getattr(self, param, None)
            if value:
                open_output_target(param, value, self._error_root())

    # -- a run turned away (429, not started) ----------------------------------------------------

    def _execution_deadline(self, context: Context) -> float | None:
        """When ``execution_timeout`` ends this try (``time.time()`` seconds); None without one."""
        if self.execution_timeout is None:
            return None
        import time
        from datetime import datetime, timezone

        started = getattr(context_ti(context), "start_date", None)
        elapsed = (datetime.now(timezone.utc) - started).total_seconds() if started is not None else 0.0
        return time.time() + self.execution_timeout.total_seconds() - max(0.0, elapsed)

    def _not_started_waits(self, context: Context) -> Any:
        """The bounds of this try's waits after 429s (``_core.not_started.NotStartedWaits``)."""
        from docify_provider._core.not_started import NotStartedWaits

        config = self.hook.config
        return NotStartedWaits(
            self.max_wait_not_started,
            deadline=self._execution_deadline(context),
            label=self.label,
            batch_operator=self.batch_operator,
            initial=config.backoff_initial,
            maximum=config.backoff_max,
            cap=config.retry_after_cap,
        )

    def _send_until_started(self, context: Context, state: TaskState, send: Callable[[], T]) -> T:
        """``send()`` (the intent, the run request, its answer), sent again while the server turns it away.

        Only ``RunNotStartedError`` (429 to the run request itself: nothing started) is waited on;
        the pending record the intent wrote is forgotten before each wait (no run is pending), so a
        try killed while waiting leaves nothing a retry would call unknown.
        """
        from docify_provider._core.not_started import send_until_started

        def forget() -> None:
            ledger = self.ledger(state)
            if ledger.pending is not None:
                ledger.forget()

        return send_until_started(send, self._not_started_waits(context), before_wait=forget, log=self.log)

    # -- a trigger that failed ------------------------------------------------------------------

    #: XCom key of the backend trigger's restart marker (``{"state": "deferred" | "sent", ...}``).
    marker_xcom_key: ClassVar[str]

    @fails_fast
    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """A deferred try that Airflow resumes only to fail it (``__fail__``) is not simply failed.

        The deferral's timeout (``execution_timeout`` while deferred) goes to ``_on_deferral_timeout``
        (Dify: stop the run) and then fails as Airflow fails it. Any other ``__fail__`` means the
        trigger failed (its connection unreadable in the triggerer, an import error, a crash): the
        triggerer has dropped it, so nothing watches the run any more. The worker, which resolves
        the connection itself, takes over (``_after_trigger_failure``).
        """
        if next_method == TRIGGER_FAIL:
            kwargs = next_kwargs or {}
            error, traceback = kwargs.get("error"), kwargs.get("traceback")
            if is_trigger_timeout(error):
                self._on_deferral_timeout(context, error)
            else:
                if traceback:
                    self.log.error("Trigger failed:\n%s", "\n".join(str(line) for line in traceback))
                return self._after_trigger_failure(context, failure_cause(error, traceback), None)
        return super().resume_execution(next_method, next_kwargs, context)

    def _on_deferral_timeout(self, context: Context, error: Any) -> None:
        """The deferral's timeout lapsed (Airflow fails the task next); a backend that can stop its run does."""

    def _read_trigger_marker(self, context: Context) -> Mapping[str, Any] | None:
        """The trigger's restart marker of this task instance; None when there is none or it cannot be read."""
        ti = context_ti(context)
        try:
            marker = ti.xcom_pull(task_ids=ti.task_id, key=self.marker_xcom_key, map_indexes=map_index(context))
        except Exception:
            self.log.warning("Could not read the %s trigger's restart marker", self.label, exc_info=True)
            return None
        if isinstance(marker, list):  # some Airflow lines return one value per map index
            marker = marker[0] if marker else None
        return marker if isinstance(marker, Mapping) else None

    def _after_trigger_failure(self, context: Context, why: str, event: Mapping[str, Any] | None) -> Any:
        """The trigger failed (``why``); settle the run it held on this worker, or say exactly what is known.

        ``event`` is the trigger's own ``trigger_failed`` event when it could still fire one (its
        ``sent`` says whether it got as far as sending: True, False, or None when it could not tell,
        and the ids it saw); after a ``__fail__`` resume only the restart marker (and the ledger's
        pending record) tell. The run policy then decides, never re-sending:

        * a run is named and this backend can follow it: follow it to its end here (the result is
          the task's, as if the trigger had delivered it);
        * nothing was sent (the trigger says so, or its marker still says ``deferred``): forget the
          pending record and fail with a ``ConfigError`` saying nothing was sent (a retry may send);
        * otherwise the request may have gone out and cannot be followed: fail closed
          (``OutcomeUnknownError`` with what is known).
        """
        from docify_provider._core.errors import ConfigError, error_class
        from docify_provider.durable.state import TaskState

        state = TaskState(context, self.log)
        backend = self._policy()
        marker = self._read_trigger_marker(context) or {}
        try:
            pending = self.ledger(state).read().get("pending") or {}
        except Exception:
            pending = {}
        known = Known.after_trigger_failure(self.label, why, event, marker, pending, backend)
        decision = decide(known, backend, where=state.describe(self.state_key))
        if decision.action is Action.FIND:
            decision = self._find_lost_run(state, decision)
        label = self.label
        if decision.action is Action.REATTACH and decision.run_id:
            self.log.warning(
                "The %s trigger failed (%s) after %s run %s was started; following the run to its end on this "
                "worker, which reads the connection itself",
                label,
                why,
                label,
                decision.run_id,
            )
            return self._follow_on_worker(context, state, decision.run_id, decision.task_id)
        if decision.action is Action.SEND:
            self.ledger(state).forget()
            source = (
                "the trigger reports"
                if event is not None and event.get("sent") is False
                else ("its restart marker still says 'deferred'")
            )
            raise error_class(self._error_root(), ConfigError)(
                f"The {label} trigger failed before it sent anything ({why}): nothing was sent to {label} "
                f"({source}), so no run was started or billed. {self._trigger_failure_hint(why)}"
            )
        if decision.run_id:
            with contextlib.suppress(Exception):  # best effort: a retry's error then names the run too
                self.ledger(state).started(**{backend.id_field: decision.run_id})
        message = f"{decision.message} (The {label} trigger failed: {why}.) {self._trigger_failure_hint(why)}"
        raise self._outcome_unknown(message.strip(), decision.run_id)

    def _follow_on_worker(self, context: Context, state: TaskState, run_id: str, task_id: Any) -> Any:
        """Re-attach to ``run_id`` on this worker and settle it (backends whose policy can re-attach)."""
        raise NotImplementedError

    def _trigger_failure_hint(self, why: str) -> str:
        """What to do when a trigger cannot read its connection (``airflow dags test``): named for the
        connection this task uses, with the commands that print its ``AIRFLOW_CONN_<ID>`` line."""
        if "isn't defined" not in why and "conn_id" not in why:
            return ""
        from docify_provider._core.config import conn_env_var

        conn_id = str(getattr(self.hook, "conn_id", "") or "<conn_id>")
        login = (
            f"; `airflow-dify login --conn-id {conn_id} --print-env` prints it for a Dify account connection"
            if getattr(self.hook, "conn_type", None) in ("dify-openapi", "dify_openapi")
            else ""
        )
        return (
            f"The trigger could not read connection {conn_id!r}: under `airflow dags test` a trigger run inline "
            f"cannot read connections kept only in the metadata database. Define it as {conn_env_var(conn_id)} "
            "there (`airflow connections export - --file-format env --serialization-format json` prints "
            f"`{conn_id}=<json>`{login}). See the README's Troubleshooting."
        )

    def _settle_failure(self, state: TaskState, exc: BaseException) -> None:
        """After a failed run request: forget the pending record only when the outcome is known."""
        if outcome_known(exc):
            self.ledger(state).forget()

    def _resumed_with_earlier_event(self, context: Context, state: TaskState, event: Mapping[str, Any] | None) -> bool:
        """True (and logged) when Airflow 3.0 resumed this retry with the event of the try that deferred.

        Airflow 3.0 keeps next_method and next_kwargs when a deferred task is retried, so the retry
        would resume with the event of the try that deferred. The caller starts it from the top
        instead, as Airflow 3.1+ does.
        """
        deferred_in_try = (event or {}).get("deferred_in_try")  # the trigger echoes the try that deferred
        if not later_try(state.try_number, deferred_in_try):
            return False
        self.log.info(
            "Try %s was resumed with the trigger event of try %s (Airflow 3.0 keeps it on retry); "
            "starting this try from the beginning",
            state.try_number,
            deferred_in_try,
        )
        return True

    # -- XCom -----------------------------------------------------------------------------------

    def _push_keys_airflow_3_0_refuses(self, context: Context, xcom: dict[str, Any]) -> None:
        """``multiple_outputs`` on Airflow 3.0: push the per-key XComs here, leaving out ``None`` values.

        Airflow 3.0's Execution API refuses an XCom whose value is ``None`` ("Field required"),
        so its own per-key push would fail the task after the run was paid for (a blocking run's
        ``session_id`` is ``None``). The whole dict still goes out as ``return_value``.
        """
        from docify_provider.compat import airflow_version

        if airflow_version() >= (3, 1):
            return
        ti = context_ti(context)
        skipped = sorted(key for key, value in xcom.items() if value is None)
        for key, value in xcom.items():
            if value is not None:
                ti.xcom_push(key, value)
        # Airflow reads the flag after execute() returns: the per-key XComs are already pushed.
        self.multiple_outputs = False
        if skipped:
            self.log.info(
                "Airflow 3.0 cannot store an XCom whose value is None: %s not pushed as own XCom(s); "
                "they are in return_value (None). Airflow 3.1+ pushes them.",
                ", ".join(skipped),
            )

    # -- attachments ----------------------------------------------------------------------------

    def _attachment_folder(self, context: Context) -> Any:
        from docify_provider._core.files import local_fs_path, safe_file_name

        ti = context_ti(context)
        dag_id = getattr(ti, "dag_id", None) or self.dag_id
        run_id = getattr(ti, "run_id", None) or str(ctx(context).get("run_id") or "run")
        index = map_index(context)
        task_part = self.task_id if index < 0 else f"{self.task_id}-{index}"
        parts = [safe_file_name(str(p), default="_") for p in (dag_id, run_id, task_part)]
        base = self.hook.resolve_path(self.attachments_to)
        local = local_fs_path(base)
        if local is not None:
            return os.path.join(os.path.abspath(local), *parts)
        return base.joinpath(*parts)

    def _store_files(self, context: Context, files: Sequence[Any]) -> list[str] | None:
        """Stream each produced file (``file_name``, ``file_url``, ``file_size``) to the attachments folder."""
        if not self.attachments_to or not files:
            return None
        from docify_provider._core.files import safe_file_name
        from docify_provider._core.wording import sized

        folder = self._attachment_folder(context)
        used: set[str] = set()
        paths: list[str] = []
        for file in files:
            name = safe_file_name(file.file_name or file.file_url.rsplit("/", 1)[-1])
            stem, ext = posixpath.splitext(name)
            counter = 1
            while name.lower() in used:
                counter += 1
                name = f"{stem}-{counter}{ext}"
            used.add(name.lower())
            if isinstance(folder, str):
                destination: Any = os.path.join(folder, name)
            else:
                destination = folder / name
            stored = self.hook.download_file(file, destination)
            self.log.info("Stored attachment %s%s at %s", file.file_name or name, sized(file.file_size), stored)
            paths.append(str(stored))
        return paths

    def _emit_file_events(self, context: Context, paths: Sequence[str], extra: Mapping[str, Any]) -> None:
        """One asset event per stored file through the ``AssetAlias`` named ``asset_alias``."""
        from pathlib import Path

        from airflow.providers.common.compat.sdk import Asset

        events = ctx(context).get("outlet_events")
        if events is None:  # pragma: no cover - Airflow always provides it
            self.log.warning("No outlet_events in the context; asset events not emitted")
            return
        alias = AssetAlias(name=self.asset_alias)
        for path in paths:
            # Local files (plain path or file:// ObjectStoragePath) get one canonical, percent-encoded URI.
            local = path[len("file://") :] if path.startswith("file://") else None if "://" in path else path
            uri = Path(local).resolve().as_uri() if local is not None else path
            events[alias].add(Asset(uri=uri), extra=dict(extra))
            self.log.info("Asset event for %s through alias %r", uri, self.asset_alias)


__all__ = [
    "RunOperatorBase",
    "context_ti",
    "ctx",
    "later_try",
    "map_index",
    "open_output_target",
    "outcome_known",
    "with_asset_alias",
]
