"""What a batch needs per backend on the worker *and* in the triggerer, written once (issue 20).

A deferrable batch checks its items on the worker, then hands them to ``triggers.batch.BatchTrigger``.
An item's plan (the checked inputs, file sources as ``ObjectStoragePath``s) cannot travel in trigger
kwargs, and 10,000 items' inputs must not either (a trigger row is meant to be small). So:

* ``BatchInputs`` keeps the raw item inputs in the batch's own store (the ``BatchKV`` Variables
  that hold its ledger), in chunks of ``INPUT_CHUNK`` items; the kwargs carry only the key and count;
* a ``BatchPlanner`` per backend (``PLANNERS``) is what the batch operator and the trigger both call:
  its hook from a connection id, the one free read items are checked against (``read_app``: the
  scenario, the parameters, the app), one item's plan (``plan``), the ``batch.backends`` entry, and
  ``options``: the backend's request fields, small and secret-free, for the kwargs. The trigger
  re-plans the raw inputs with it (the reads are free), in a thread: the hooks' reads are blocking.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

#: Raw item inputs per Variable of ``BatchInputs`` (an item is usually well under 1 KB).
INPUT_CHUNK = 200


class BatchInputs:
    """The raw inputs of a batch's items in ``kv`` (a ``durable.batch_store.BatchKV``), written once as
    lists of ``chunk`` items, ``<key>:in<n>`` (``KeyChunks``)."""

    def __init__(self, kv: Any, key: str, *, chunk: int = INPUT_CHUNK) -> None:
        from docify_provider.durable.batch_store import KeyChunks

        self.chunks = KeyChunks(kv, f"{key}:in", chunk, shape=list)

    @staticmethod
    def as_json(items: Sequence[Mapping[str, Any]]) -> str | None:
        """Why ``items`` cannot be stored as JSON (bytes, an open file, a path object...); None when they can."""
        for index, item in enumerate(items):
            try:
                json.dumps(item)
            except (TypeError, ValueError) as exc:
                return f"item {index} is not JSON ({exc})"
        return None

    async def write(self, items: Sequence[Mapping[str, Any]]) -> None:
        size = self.chunks.size
        for n in range(self.chunks.count(len(items))):
            await self.chunks.write(n, list(items[n * size : (n + 1) * size]))

    async def read(self, count: int) -> list[Mapping[str, Any]]:
        """Every item, in order; raises when a chunk is missing or unreadable (nothing can be sent then)."""
        items: list[Mapping[str, Any]] = []
        for n in range(self.chunks.count(count)):
            chunk = await self.chunks.read(n)
            if chunk is None:
                raise LookupError(f"the batch's inputs {self.chunks.key(n)!r} are missing from its store")
            items.extend(chunk)
        if len(items) != count:
            raise LookupError(f"the batch's stored inputs hold {len(items)} item(s), not {count}")
        return items

    async def delete(self, count: int) -> None:
        for n in range(self.chunks.count(count)):
            await self.chunks.delete(n)


class BatchPlanner:
    """One backend's batch pieces over its hook (module docstring); ``options`` are its request fields."""

    #: The backend's name in ``PLANNERS`` and in the trigger's kwargs.
    name: ClassVar[str]

    def __init__(self, hook: Any, *, validate: bool = True, options: Mapping[str, Any] | None = None) -> None:
        self.hook = hook
        self.validate = validate
        self.options = dict(options or {})

    @classmethod
    def make_hook(cls, conn_id: str) -> Any:
        raise NotImplementedError

    def error_root(self) -> Any:
        raise NotImplementedError

    def read_app(self) -> None:
        """Read what checking the items needs, once (parameters, scenario, the app): free reads."""

    def plan(self, inputs: Mapping[str, Any]) -> Any:
        """One item checked (raises the backend's ``InputError``), as its backend's ``prepare`` takes it."""
        raise NotImplementedError

    def backend(self) -> Any:
        raise NotImplementedError


class DocifyPlanner(BatchPlanner):
    """Docify: items checked against ``GET /v1/scenario/info``; ``options``: ``additional_info``."""

    name = "docify"

    @classmethod
    def make_hook(cls, conn_id: str) -> Any:
        from docify_provider.hooks.docify import DocifyHook

        return DocifyHook(docify_conn_id=conn_id)

    def error_root(self) -> Any:
        from docify_provider.docify.errors import DocifyError

        return DocifyError

    def read_app(self) -> None:
        self._scenario = self.hook.get_scenario_info()

    def plan(self, inputs: Mapping[str, Any]) -> Any:
        return self.hook.plan_inputs(inputs, scenario=self._scenario, validate=self.validate)

    def backend(self) -> Any:
        from docify_provider.batch.backends import DocifyBatch

        return DocifyBatch(additional_info=self.options.get("additional_info"))


class DifyPlanner(BatchPlanner):
    """Dify's Service API: items checked against ``GET /parameters``; ``options``: ``files``, ``workflow_id``."""

    name = "dify"

    @classmethod
    def make_hook(cls, conn_id: str) -> Any:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=conn_id)

    def error_root(self) -> Any:
        from docify_provider.dify.errors import DifyError

        return DifyError

    def read_app(self) -> None:
        self._parameters = self.hook.get_parameters() if self.validate else None

    def plan(self, inputs: Mapping[str, Any]) -> Any:
        if not self.validate:
            return dict(inputs)  # sent as given, as the single-run operators do with validate=False
        return self.hook.plan_inputs(inputs, parameters=self._parameters)

    def backend(self) -> Any:
        from docify_provider.batch.backends import DifyBatch

        options = self.options
        return DifyBatch(
            files=options.get("files"),
            workflow_id=options.get("workflow_id") or None,
            base_url=self.hook.config.base_url,
        )


class DifyAppPlanner(BatchPlanner):
    """Dify's account API: ``options["app"]`` (id or exact name) resolved once, items checked against its
    ``input_schema``; workflow apps only; ``options``: ``app``, ``files``."""

    name = "dify_openapi"

    @classmethod
    def make_hook(cls, conn_id: str) -> Any:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=conn_id)

    def error_root(self) -> Any:
        from docify_provider.dify_openapi.errors import DifyOpenAPIError

        return DifyOpenAPIError

    def read_app(self) -> None:
        from docify_provider._core.errors import ConfigError, error_class

        app = self.options.get("app")
        if not isinstance(app, str) or not app.strip():
            raise ValueError(f"app must be a Dify app id or exact name, got {app!r}")
        resolved = self.hook.resolve_app(app)
        if resolved.mode != "workflow":
            raise error_class(self.error_root(), ConfigError)(
                f"app={app!r} is a {resolved.mode} app; batch runs take workflow apps (map DifyRunAppOperator "
                "over the documents for other apps). Nothing was uploaded or run."
            )
        self.app_id, self.mode = resolved.id, resolved.mode

    def plan(self, inputs: Mapping[str, Any]) -> Any:
        resolved = self.hook.resolve_file_inputs(self.app_id, inputs)
        self.hook.client.prepare_run(self.app_id, resolved, validate=self.validate)
        return resolved

    def backend(self) -> Any:
        from docify_provider.batch.backends import DifyAppBatch

        if not hasattr(self, "app_id"):  # a task resumed to report: the app is resolved again (free)
            self.read_app()
        return DifyAppBatch(
            app=self.app_id, mode=self.mode, files=self.options.get("files"), base_url=self.hook.config.base_url
        )


PLANNERS: dict[str, type[BatchPlanner]] = {p.name: p for p in (DocifyPlanner, DifyPlanner, DifyAppPlanner)}

__all__ = ["INPUT_CHUNK", "PLANNERS", "BatchInputs", "BatchPlanner", "DifyAppPlanner", "DifyPlanner", "DocifyPlanner"]
