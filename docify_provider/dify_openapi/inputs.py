"""Checking a run's inputs against the app's ``input_schema`` before anything is sent.

``GET /apps/{id}`` gives a JSON Schema (Draft 2020-12) of the run body: ``inputs`` (an object with
``additionalProperties: false``; text as ``string`` + ``maxLength``, select as ``enum``, number,
files as ``{type, transfer_method, url, upload_file_id}`` objects or arrays of them) and, for chat
apps, ``query``. It is checked with the ``jsonschema`` library, every problem collected and named
by its input. File values are checked by the Service API's planner (``dify.inputs.plan_inputs``:
types, extensions, sizes, counts, sources) and stand in the schema check as the mappings they will
become, so one file problem is reported once. The result is one ``DifyOpenAPIInputError`` or an
``InputPlan`` (the wire inputs, and the local files to send as ``files[<var>]`` parts).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from docify_provider.dify.errors import DifyInputError
from docify_provider.dify.inputs import InputPlan, plan_inputs
from docify_provider.dify.models import AppParameters, InputVariable
from docify_provider.dify_openapi.errors import DifyOpenAPIInputError
from docify_provider.dify_openapi.models import AppDescription
from docify_provider.dify_openapi.protocol import CHAT_MODES

log = logging.getLogger(__name__)

#: Stands in for a file's ``upload_file_id`` while the schema is checked (the file is not sent yet).
PLACEHOLDER_FILE_ID = "00000000-0000-4000-8000-000000000000"


def _is_file_schema(schema: Any) -> bool:
    props = schema.get("properties") if isinstance(schema, dict) else None
    return isinstance(props, dict) and "transfer_method" in props


def file_variables(description: AppDescription) -> list[InputVariable]:
    """The app's file inputs: from ``parameters`` when given, else read off ``input_schema``."""
    params = description.parameters
    if params is not None and params.user_input_form:
        return [v for v in params.user_input_form if v.takes_files]
    found = []
    for name, prop in _input_properties(description.input_schema).items():
        if _is_file_schema(prop):
            found.append(InputVariable(type="file", variable=name))
        elif isinstance(prop, dict) and prop.get("type") == "array" and _is_file_schema(prop.get("items")):
            found.append(InputVariable(type="file-list", variable=name, max_length=prop.get("maxItems")))
    return found


def _input_properties(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    inputs = (schema.get("properties") or {}).get("inputs")
    props = inputs.get("properties") if isinstance(inputs, dict) else None
    return props if isinstance(props, dict) else {}


def _placeholder(file_type: str = "document") -> dict[str, Any]:
    return {"type": file_type, "transfer_method": "local_file", "upload_file_id": PLACEHOLDER_FILE_ID}


def _where(path: list[Any]) -> str:
    head = f"{path[0]!r}" if path else "inputs"
    return head + "".join(f"[{p}]" for p in path[1:])


def _problem(error: ValidationError, known: list[str]) -> list[str]:
    path = list(error.absolute_path)
    in_inputs = path[:1] == ["inputs"]
    rest = path[1:] if in_inputs else path
    if error.validator == "required":
        missing = [n for n in error.validator_value if isinstance(error.instance, dict) and n not in error.instance]
        out = []
        for name in missing:
            if not in_inputs and not rest and name == "query":
                out.append("'query' is required: this is a chat app (pass query=...)")
            elif not in_inputs and not rest and name == "inputs":
                out.append("inputs are required")
            else:
                out.append(f"{_where([*rest, name])} is required")
        return out
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set((error.schema.get("properties") or {}) if isinstance(error.schema, dict) else ())
        extras = [k for k in error.instance if k not in allowed]
        if in_inputs and not rest:
            names = ", ".join(sorted(known)) or "none"
            return [f"{k!r} is not an input of this app (its inputs: {names})" for k in extras]
        return [f"{_where([*rest, k]) if rest else repr(k)} is not accepted here" for k in extras]
    where = _where(rest) if (in_inputs or rest) else "the run body"
    return [f"{where}: {error.message}"]


def schema_problems(schema: Mapping[str, Any] | None, instance: Mapping[str, Any]) -> list[str]:
    """Every way ``instance`` (``{"inputs": ..., "query": ...}``) breaks ``schema``, each naming its input."""
    if not schema:
        return []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        log.warning("The app's input_schema is not a valid JSON Schema (%s); not checked against it", exc.message)
        return []
    known = sorted(_input_properties(schema))
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    problems: list[str] = []
    for error in errors:
        for text in _problem(error, known):
            if text not in problems:
                problems.append(text)
    return problems


def check_inputs(
    inputs: Mapping[str, Any] | None,
    description: AppDescription,
    *,
    query: str | None = None,
) -> InputPlan:
    """Check ``inputs`` (and ``query``) against the app; raise ONE ``DifyOpenAPIInputError`` naming
    every problem, or return the plan: wire values, and the local files still to send."""
    inputs = dict(inputs or {})
    problems: list[str] = []
    mode = description.mode
    chat = mode in CHAT_MODES
    if chat and (query is None or not str(query).strip()):
        problems.append(f"'query' is required: {description.name or description.id} is a {mode} app (pass query=...)")
    if not chat and query is not None:
        problems.append(f"'query' is only for chat apps; {description.name or description.id} is a {mode} app")

    schema = description.input_schema
    file_vars = file_variables(description)
    file_names = {v.variable for v in file_vars}
    params = description.parameters or AppParameters()
    plan = InputPlan(values={})
    planned: dict[str, Any] = {}
    if schema is not None:
        # The schema checks everything but the files; the planner checks the files only (not whether
        # one is missing: the schema's "required" says it once).
        only_files = dataclasses.replace(
            params, user_input_form=[dataclasses.replace(v, required=False) for v in file_vars]
        )
        try:
            plan = plan_inputs({k: v for k, v in inputs.items() if k in file_names}, only_files)
        except DifyInputError as exc:
            problems.extend(exc.problems)
        else:
            planned = plan.values
        instance_inputs = {k: v for k, v in inputs.items() if k not in file_names}
        pending = {(u.variable, u.index): u for u in plan.uploads}
        for name in file_names & set(inputs):
            value = planned.get(name, inputs[name])
            if isinstance(value, list):
                instance_inputs[name] = [
                    _placeholder(pending[(name, i)].file_type) if (name, i) in pending or not isinstance(v, dict) else v
                    for i, v in enumerate(value)
                ]
            elif (name, None) in pending or not isinstance(value, dict):
                upload = pending.get((name, None))
                instance_inputs[name] = _placeholder(upload.file_type if upload else "document")
            else:
                instance_inputs[name] = value
        instance: dict[str, Any] = {"inputs": instance_inputs}
        if chat and query is not None:
            instance["query"] = query
        problems.extend(p for p in schema_problems(schema, instance) if not p.startswith("'query' is required"))
        values = {k: v for k, v in inputs.items() if k not in file_names}
        values.update(planned)
    elif description.parameters is not None:
        try:
            plan = plan_inputs(inputs, params)
        except DifyInputError as exc:
            problems.extend(exc.problems)
        values = plan.values
    else:
        log.info("App %s describes no input_schema or parameters; inputs not checked before the run", description.id)
        values = inputs
    if problems:
        raise DifyOpenAPIInputError(problems)
    return InputPlan(values=values, uploads=plan.uploads)


__all__ = ["check_inputs", "file_variables", "schema_problems"]
