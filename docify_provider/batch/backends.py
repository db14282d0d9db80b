"""What differs per backend in a batch: how one item's run is sent, re-attached and read. No Airflow.

The batch runner (``runner``) is written once; each backend gives it the client calls its single-run
triggers use (``triggers/*._open``): Docify streams (no re-attach: a run whose stream is cut is
"unknown"), the Dify Service API streams and re-attaches by run id (its client already re-attaches
a cut stream itself), the account API runs an app and follows a run by id. ``outcome`` reads the
terminal event into what the ledger keeps (the same records the single-run ledger and the
triggers' success events carry) and the item's outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from docify_provider.durable.policy import DIFY, DIFY_OPENAPI, DOCIFY, Backend


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A run that ended well: ``record`` for the ledger's result store, ``outputs`` for the item."""

    record: Mapping[str, Any]
    outputs: Any
    run_id: str | None


class ItemPaused(Exception):
    """A Dify run paused (human input): the item is left 'started' with its run id, to re-attach later."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        super().__init__(f"Dify run {run_id} paused for human input")


class BatchBackend:
    """One backend's calls; ``options`` are the single-run operator's request fields (files, workflow_id...)."""

    #: The backend in the run policy (an instance may narrow it: ``DifyAppBatch`` for chat apps).
    policy: Backend
    #: The item field that names the run (``session_id`` for Docify, ``workflow_run_id`` for Dify).
    id_field: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def prepare(self, client: Any, item: Any, *, user: str | None) -> Mapping[str, Any]:
        """The wire inputs of an item about to be sent: its files uploaded (free, repeatable).

        Called per item just before it asks for a run slot, never for an item reused or re-attached,
        so an upload never holds a slot of the server's run cap. ``item`` is what the caller checked
        up front (every item before anything is uploaded or sent): a backend's input plan, or the
        inputs themselves when there is nothing to upload.
        """
        return item

    def send(self, client: Any, inputs: Mapping[str, Any], *, user: str | None) -> AsyncIterator[Any]:
        raise NotImplementedError

    def reattach(self, client: Any, run_id: str, *, task_id: str | None, user: str | None) -> AsyncIterator[Any]:
        raise NotImplementedError(f"{self.policy.label} runs cannot be re-attached")

    #: Whether a started run can be stopped (``stop``): Dify's can, by its task id; Docify's cannot.
    can_stop: ClassVar[bool] = False

    async def stop(self, client: Any, run_id: str | None, task_id: str, *, user: str | None) -> Any:
        """Stop a started run; returns what the run became, read back once the stop is sent (a
        ``WorkflowRun``; None when not read). ``batch.stopping`` is the one caller."""
        raise NotImplementedError(f"{self.policy.label} runs cannot be stopped")

    def ids(self, event: Any) -> tuple[str | None, str | None]:
        """(run id, task id) an event names."""
        raise NotImplementedError

    def outcome(self, event: Any) -> Outcome | None:
        """The run's outcome when ``event`` ends it; raises ``ItemPaused`` for a pause; None otherwise."""
        raise NotImplementedError

    def outputs(self, record: Mapping[str, Any]) -> Any:
        """An item's outputs from its stored record (a bought item reused by a later pass)."""
        raise NotImplementedError

    def files(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The files a bought run produced (``file_name``, ``file_url``, ``file_size``), for attachments."""
        return []


class DocifyBatch(BatchBackend):
    """Docify: ``POST /v1/scenario/run/streaming`` per item; no status endpoint, so never re-attached."""

    policy = DOCIFY
    id_field = "session_id"

    async def prepare(self, client: Any, item: Any, *, user: str | None) -> Mapping[str, Any]:
        """``item`` is ``docify.inputs.UploadPlan`` (the hook's ``plan_inputs``), or wire inputs."""
        pending = getattr(item, "pending", None)
        if pending is None:
            return item
        uploaded = {
            token: (await client.upload_file(source, user=user)).to_input() for token, source in pending.items()
        }
        return item.build(uploaded)

    def send(self, client: Any, inputs: Mapping[str, Any], *, user: str | None) -> AsyncIterator[Any]:
        return client.stream(inputs, user=user, additional_info=self.options.get("additional_info"))

    def ids(self, event: Any) -> tuple[str | None, str | None]:
        return event.session_id, None

    def outcome(self, event: Any) -> Outcome | None:
        if event.type != "COMPLETE" or event.response is None:
            return None
        result = event.response
        return Outcome(result.raw, self._outputs(result.json_result, result.result), event.session_id)

    def outputs(self, record: Mapping[str, Any]) -> Any:
        from docify_provider.docify.models import RunResult

        result = RunResult.from_api(dict(record))
        return self._outputs(result.json_result, result.result)

    def files(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        from docify_provider.docify.models import RunResult

        return _file_dicts(RunResult.from_api(dict(record)).files)

    @staticmethod
    def _outputs(json_result: Any, text: Any) -> Any:
        return json_result if json_result is not None else text


class DifyBatch(BatchBackend):
    """Dify's Workflow Service API: a streamed run per item, re-attached by run id."""

    policy = DIFY
    id_field = "workflow_run_id"

    async def prepare(self, client: Any, item: Any, *, user: str | None) -> Mapping[str, Any]:
        """``item`` is ``dify.inputs.InputPlan`` (the hook's ``plan_inputs``), or wire inputs."""
        uploads = getattr(item, "uploads", None)
        if uploads is None:
            return item
        return item.build([await client.upload_file(p.source, user=user, file_name=p.file_name) for p in uploads])

    def send(self, client: Any, inputs: Mapping[str, Any], *, user: str | None) -> AsyncIterator[Any]:
        options = self.options
        return client.stream_workflow(
            inputs, user=user, files=options.get("files"), workflow_id=options.get("workflow_id")
        )

    def reattach(self, client: Any, run_id: str, *, task_id: str | None, user: str | None) -> AsyncIterator[Any]:
        # No user: the client's default one, the same it sent the run with (events are per end user).
        return client.attach(run_id, user=user or "", task_id=task_id)

    def ids(self, event: Any) -> tuple[str | None, str | None]:
        return event.workflow_run_id, event.task_id

    can_stop = True

    async def stop(self, client: Any, run_id: str | None, task_id: str, *, user: str | None) -> Any:
        return await client.stop_task(task_id, user=user, workflow_run_id=run_id)

    def outcome(self, event: Any) -> Outcome | None:
        from docify_provider.dify.models import run_record
        from docify_provider.dify.stream import raise_if_failed

        if event.event == "workflow_paused":
            raise ItemPaused(event.workflow_run_id)
        if event.event != "workflow_finished":
            return None
        run = getattr(event, "result", None) or event.run
        raise_if_failed(run, "stream", self._root())
        return Outcome(run_record(run), dict(run.outputs), run.workflow_run_id)

    def outputs(self, record: Mapping[str, Any]) -> Any:
        from docify_provider.dify.models import run_from_record

        return dict(run_from_record(record, None).outputs)

    def files(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``base_url`` (option): the API's, which Dify's relative file URLs hang off."""
        from docify_provider.dify.models import run_from_record

        return _file_dicts(f for f in run_from_record(record, self.options.get("base_url")).files if f.file_url)

    @staticmethod
    def _root() -> Any:
        from docify_provider.dify.errors import DifyError

        return DifyError


class DifyAppBatch(DifyBatch):
    """Dify's account API: ``app`` (id or exact name) run per item, followed by run id.

    ``mode`` (the app's, once resolved): the events route re-attaches workflow and advanced-chat
    runs only, so for another mode a cut run is "unknown", as the single-run operator says.
    """

    policy = DIFY_OPENAPI

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from docify_provider.dify_openapi.protocol import EVENT_MODES

        mode = options.get("mode")
        if mode and mode not in EVENT_MODES:
            self.policy = DIFY_OPENAPI.without_reattach(f"Dify's events route cannot re-attach to a {mode} run")

    async def prepare(self, client: Any, item: Any, *, user: str | None) -> Mapping[str, Any]:
        """The account API sends an item's files as parts of its run request: nothing to upload first."""
        return item

    def send(self, client: Any, inputs: Mapping[str, Any], *, user: str | None) -> AsyncIterator[Any]:
        options = self.options
        return client.run_app(options["app"], inputs, query=options.get("query"), files=options.get("files"))

    def reattach(self, client: Any, run_id: str, *, task_id: str | None, user: str | None) -> AsyncIterator[Any]:
        return client.follow_run(self.options["app"], run_id, task_id=task_id)

    async def stop(self, client: Any, run_id: str | None, task_id: str, *, user: str | None) -> Any:
        return await client.stop_task(self.options["app"], task_id, workflow_run_id=run_id)

    @staticmethod
    def _root() -> Any:
        from docify_provider.dify_openapi.errors import DifyOpenAPIError

        return DifyOpenAPIError


def _file_dicts(files: Any) -> list[dict[str, Any]]:
    return [{"file_name": f.file_name, "file_url": f.file_url, "file_size": f.file_size} for f in files]


__all__ = ["BatchBackend", "DifyAppBatch", "DifyBatch", "DocifyBatch", "ItemPaused", "Outcome"]
