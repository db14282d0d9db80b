"""The XCom values the docs show (docs/operators/*.md include the sections below), checked against
``docify_provider.xcom`` by ``tests/contract/test_xcom.py::test_the_docs_show_every_key``."""

from __future__ import annotations

from typing import Any

# --8<-- [start:docify]
# What DocifyRunScenarioOperator and DocifyStreamScenarioOperator return (XCom "return_value"):
DOCIFY_RUN_XCOM = {
    "run_id": "run-123456",  # Docify's run id
    "scenario_id": "1001",
    "is_success": True,
    "result": "Invoice Number: INV-2041 ...",  # the text result (or None)
    "json_result": {"invoice_number": "INV-2041", "amount": 1250.0},  # jsonResult parsed; the raw string if not JSON
    "cost_points": 10.5,  # what the run cost
    "elapsed_ms": 5000,
    "created_at": "2026-02-26T08:00:00+00:00",
    "finished_at": "2026-02-26T08:00:05+00:00",
    "session_id": "8a1c...",  # streaming runs only; None for blocking runs
    "files": [  # one entry per attachment, in Docify's order
        {
            "file_name": "invoice_extracted.csv",
            "file_url": "https://...",
            "file_size": 2048,  # as declared by Docify (checked when downloaded)
            # where it was stored; None without attachments_to
            "path": "<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/invoice_extracted.csv",
        }
    ],
}
# --8<-- [end:docify]

# --8<-- [start:dify]
# What DifyRunWorkflowOperator, DifyStreamWorkflowOperator and DifyWorkflowRunSensor return:
DIFY_RUN_XCOM = {
    "workflow_run_id": "5f0c...",  # Dify's run id (the key of the app's run log)
    "task_id": "b7e2...",  # Dify's task id (what a stop request names)
    "workflow_id": "0d9a...",
    "status": "succeeded",  # or "partial-succeeded"; failed and stopped runs fail the task
    "outputs": {"text": "..."},  # the workflow's output variables
    "error": None,
    "elapsed_time": 3.2,  # seconds
    "total_tokens": 812,
    "total_steps": 4,
    # Summed over the run's nodes. price and currency are None where Dify reported no price: a blocking
    # answer (tokens only), or a run followed by id whose nodes finished unseen ("price_unknown" then
    # says why; it is None otherwise).
    "usage": {"tokens": 812, "price": 0.0012, "currency": "USD", "price_unknown": None},
    "created_at": "2026-12-02T08:00:00+00:00",
    "finished_at": "2026-12-02T08:00:03+00:00",
    "files": [  # output variables that are Dify files, stored as Docify attachments are
        {
            "file_name": "report.csv",
            "file_url": "https://...",
            "file_size": 2048,
            "path": "<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/report.csv",
        }
    ],
}
# --8<-- [end:dify]

# --8<-- [start:dify-app]
# DifyRunAppOperator returns the keys above, plus:
DIFY_APP_RUN_XCOM_EXTRA = {
    "app_id": "a3c1...",  # the app that ran (its name resolved to an id)
    "app_name": "Text Writer",  # its name, as Dify gave it when the task looked the app up; None if Dify named none
    "mode": "workflow",  # workflow, advanced-chat, chat, agent-chat or completion
    # chat, advanced-chat, agent-chat and completion apps only:
    "answer": "...",  # the whole answer (also in outputs["answer"])
    "conversation_id": "c9d4...",  # pass it as conversation_id= to continue the conversation
}
# --8<-- [end:dify-app]

#: The keys only chat-family apps add (``answer``, ``conversation_id``).
CHAT_ONLY_KEYS = frozenset({"answer", "conversation_id"})


def keys(example: dict[str, Any]) -> frozenset[str]:
    return frozenset(example)
