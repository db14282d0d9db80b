"""Nightly: run a chosen set of Dify apps, whatever their mode, one mapped task per app.

For teams that keep their scheduled Dify work as apps in a workspace. The DAG names the apps it
runs, by exact name or id (param ``apps``) and/or by a name pattern (param ``name_pattern``, a
glob on the whole app name such as ``nightly-*``); both are checked here against every app the
workspace lists, so a new app joins the batch when it is added to the list or named to match the
pattern. (Tags are not used: current Dify ignores the ``tag`` filter of ``GET /apps`` and sends
no tags, so "every app tagged nightly" would run, and bill, every app in the workspace;
``DifyOpenAPIHook.list_apps(tag=...)`` refuses such a server.)

* ``plan_runs`` selects the apps (``DifyOpenAPIHook.select_apps``, the account token of
  connection ``dify_account``): a name that matches no app, or several, fails the task before
  anything runs, listing the candidates. It reads each app's ``input_schema``
  (``describe_app``). An app's inputs are its schema's defaults, overridden by the DAG param
  ``app_inputs`` (``{"<app name or id>": {"<variable>": value, "query": "..."}}``; ``query`` is the
  user message of chat apps). An app whose required inputs stay empty (a file input, a topic
  nobody gave) is skipped with a log line naming the inputs; the others run.
* ``run_app`` maps ``DifyRunAppOperator`` over the plan (``expand_kwargs``: one task per app,
  named after it in the UI). Each run streams on the worker; its inputs are checked against the
  app's schema before anything is sent, and a retry re-attaches to the run an earlier try started
  instead of paying again.
* ``summary`` logs what ran (mode, status, first words of the output) and what was skipped.

Params: ``apps`` (exact app names or ids; default the bundled emulator's five nightly apps),
``name_pattern`` (a glob, default none), ``app_inputs``; connection ``dify_account`` (type
``dify-openapi``: host ``https://<dify>/openapi/v1``, password the account token).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify_openapi import DifyRunAppOperator

CONN_ID = "dify_account"

log = logging.getLogger(__name__)


def fill_inputs(schema: dict[str, Any] | None, given: dict[str, Any]) -> tuple[dict[str, Any], str | None, list[str]]:
    """(inputs, query, missing) for one app: its ``input_schema`` defaults, then ``given``.

    ``missing`` names the required inputs (and a chat app's ``query``) that are still empty.
    Names in ``given`` that the app does not know are kept: the run's input check then names them.
    """
    body = (schema or {}).get("properties") or {}
    spec = body.get("inputs") or {}
    properties = spec.get("properties") or {}
    chat = "query" in body
    inputs = {name: p["default"] for name, p in properties.items() if isinstance(p, dict) and "default" in p}
    inputs.update({k: v for k, v in given.items() if k != "query" or "query" in properties})
    query = given.get("query") if chat and "query" not in properties else None
    query = query or ((body.get("query") or {}).get("default") if chat else None)
    missing = [name for name in spec.get("required") or [] if inputs.get(name) in (None, "", [])]
    if chat and not query:
        missing.append("query")
    return inputs, query, missing


with DAG(
    dag_id="example_dify_nightly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Scheduled: it starts paused, whatever [core] dags_are_paused_at_creation says, so that it
    # runs only once its connection exists and someone unpaused it.
    is_paused_upon_creation=True,
    max_active_runs=1,
    tags=["dify", "example"],
    params={
        "apps": Param(
            ["Text Writer", "Document Summary", "Long Job", "Chat Assistant", "Completion Writer"],
            type="array",
            items={"type": "string"},
            description="Exact app names or ids to run (each must match exactly one app)",
        ),
        "name_pattern": Param(
            None,
            type=["null", "string"],
            description="Also run every app whose whole name matches this glob (e.g. nightly-*); checked here",
        ),
        "app_inputs": Param(
            {
                "Text Writer": {"topic": "what changed in the warehouse today", "tone": "formal"},
                "Completion Writer": {"topic": "tomorrow's delivery plan"},
                "Chat Assistant": {"query": "Summarise today's open support tickets."},
            },
            type="object",
            description='Inputs per app name or id: {"App name": {"variable": value, "query": "..."}}',
        ),
    },
    doc_md=__doc__,
) as dag:

    @task
    def plan_runs(params: dict[str, Any] | None = None, ti: Any = None) -> list[dict[str, Any]]:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        assert params is not None
        given_by_app = params["app_inputs"] or {}
        hook = DifyOpenAPIHook(dify_openapi_conn_id=CONN_ID)
        try:
            # --8<-- [start:plan]
            apps = hook.select_apps(params["apps"] or [], name_pattern=params["name_pattern"] or None)
            runs, skipped, names = [], [], {}
            for app in apps:
                description = hook.describe_app(app.id)
                given = dict(given_by_app.get(app.id) or given_by_app.get(app.name) or {})
                inputs, query, missing = fill_inputs(description.input_schema, given)
                if missing:
                    log.warning(
                        "Skipping app %r (%s, %s): required input(s) %s have no default and no value in "
                        "params.app_inputs[%r]",
                        app.name,
                        app.mode,
                        app.id,
                        ", ".join(missing),
                        app.name,
                    )
                    skipped.append({"app": app.name, "app_id": app.id, "mode": app.mode, "missing": missing})
                    continue
                runs.append({"app": app.id, "inputs": inputs, "query": query})
                names[app.id] = app.name
            # --8<-- [end:plan]
        finally:
            hook.close()
        log.info(
            "%d app(s) selected: %d to run (%s), %d skipped",
            len(apps),
            len(runs),
            ", ".join(names.values()) or "none",
            len(skipped),
        )
        # Beside the mapped list: the skipped apps (for the summary) and the names (for the UI's map index).
        ti.xcom_push(key="skipped", value=skipped)
        ti.xcom_push(key="names", value=names)
        return runs

    plan = plan_runs()

    # --8<-- [start:run-app]
    run_app = DifyRunAppOperator.partial(
        task_id="run_app",
        dify_openapi_conn_id=CONN_ID,
        retries=1,
        retry_delay=timedelta(minutes=1),
        max_active_tis_per_dag=4,
        map_index_template="{{ ti.xcom_pull(task_ids='plan_runs', key='names')[task.app] }}",
    ).expand_kwargs(plan)
    # --8<-- [end:run-app]

    @task(trigger_rule="none_failed")
    def summary(results: list[dict[str, Any]] | None, skipped: list[dict[str, Any]]) -> dict[str, Any]:
        ran = []
        for res in results or []:
            text = res.get("answer") or (res.get("outputs") or {}).get("text") or ""
            ran.append(
                {
                    "app_id": res["app_id"],
                    "mode": res["mode"],
                    "status": res["status"],
                    "total_tokens": res.get("total_tokens"),
                    "output": str(text)[:80],
                }
            )
        report = {
            "ran": ran,
            "skipped": [s["app"] for s in skipped],
            "total_tokens": sum(r["total_tokens"] or 0 for r in ran),
        }
        for one in ran:
            log.info("  %s app %s: %s, %r", one["mode"], one["app_id"], one["status"], one["output"])
        for one in skipped:
            log.info("  skipped %r: missing %s", one["app"], ", ".join(one["missing"]))
        tokens = report["total_tokens"]
        log.info("Nightly Dify batch: %d app(s) ran, %d skipped, %d tokens", len(ran), len(skipped), tokens)
        return report

    plan >> run_app
    summary(run_app.output, plan["skipped"])
