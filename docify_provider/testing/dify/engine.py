"""Executing Dify workflow runs in background threads, event by event.

Each app ``kind`` is a small graph (start, LLM, tool, human-input, end nodes) whose events
are published on the run's channel, ``event_interval`` apart. A run never depends on a
connection: streams may come and go. Run faults (``failed_run``, ``partial_success``,
``error_event``, the attachment kinds) change what the run does.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from docify_provider.testing.dify.files import signed_url
from docify_provider.testing.dify.runs import STOPPED_BY_USER, DifyRun, HumanForm
from docify_provider.testing.records import StoredAttachment
from docify_provider.testing.runs import declared_size

if TYPE_CHECKING:
    from docify_provider.testing.dify.emulator import DifyEmulator

logger = logging.getLogger(__name__)

TEXT_CHUNKS = ("{tone} notes on {topic}: ", "a café ", "crème ", "and a croissant — ", "voilà, ", "fin.")
REVIEW_ACTIONS = [
    {"id": "approve", "title": "Approve", "button_style": "primary"},
    {"id": "reject", "title": "Reject", "button_style": "default"},
]


class _Stopped(Exception):
    """A stop request reached the run."""


class _Shutdown(Exception):
    """The emulator is stopping: end the thread without publishing anything."""


class _Runner:
    """Publishes one run's events; ``wait`` is where stops and shutdowns land."""

    def __init__(self, emu: DifyEmulator, run: DifyRun) -> None:
        self.emu = emu
        self.run = run
        self.kind = run.fault.kind if run.fault is not None else None
        self.index = 0
        self.previous: str | None = None

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self.run.wake.wait(seconds)
        if self.emu.stopping.is_set():
            raise _Shutdown
        if self.run.stop_requested:
            raise _Stopped

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.wait(self.emu.event_interval)
        self.run.publish(self.run.envelope(name, data))

    def workflow_started(self, reason: str) -> None:
        self.emit("workflow_started", self.run.started_data(reason))

    def node_data(self, node_id: str, node_type: str, title: str, inputs: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{self.run.id}/{node_id}")),
            "node_id": node_id,
            "node_type": node_type,
            "title": title,
            "index": self.index,
            "predecessor_node_id": self.previous,
            "inputs": inputs,
            "inputs_truncated": False,
            "created_at": int(time.time()),
            "extras": {},
            "iteration_id": None,
            "loop_id": None,
            "agent_strategy": None,
        }

    def node_started(self, node_id: str, node_type: str, title: str, inputs: Any = None) -> dict[str, Any]:
        self.index += 1
        data = self.node_data(node_id, node_type, title, inputs or {})
        self.emit("node_started", data)
        return data

    def node_finished(
        self,
        started: dict[str, Any],
        outputs: dict[str, Any] | None,
        *,
        status: str = "succeeded",
        error: str | None = None,
        tokens: int = 0,
    ) -> None:
        data = dict(started)
        data.update(process_data={}, process_data_truncated=False, outputs=outputs, outputs_truncated=False)
        data.update(status=status, error=error, elapsed_time=self.emu.event_interval, finished_at=int(time.time()))
        data["execution_metadata"] = (
            {"total_tokens": tokens, "total_price": round(tokens * 2e-6, 7), "currency": "USD"} if tokens else {}
        )
        data["files"] = []
        self.previous = started["node_id"]
        self.run.update(total_steps=self.run.total_steps + 1, total_tokens=self.run.total_tokens + tokens)
        self.emit("node_finished", data)

    def text(self, node_id: str, text: str) -> None:
        self.emit("text_chunk", {"text": text, "from_variable_selector": [node_id, "text"]})

    def start(self) -> None:
        self.node_finished(self.node_started("start", "start", "Start", self.run.inputs), dict(self.run.inputs))

    def llm(self, chunks: list[str], title: str = "LLM") -> str | None:
        """An LLM node streaming ``chunks``; returns its text, None when it failed (``failed_run``)."""
        started = self.node_started("llm", "llm", title, {"prompt": chunks[0]})
        tokens = 17 * len(chunks) + sum(len(c) for c in chunks)
        if self.kind in ("failed_run", "partial_success"):
            self.text("llm", chunks[0])
            message = str(self.run.fault.message if self.run.fault else "")
            status = "failed" if self.kind == "failed_run" else "exception"
            self.node_finished(started, None, status=status, error=message, tokens=tokens // 2)
            if self.kind == "failed_run":
                self.finish("failed", None, error=message)
                return None
            self.run.update(exceptions_count=self.run.exceptions_count + 1)
            return chunks[0] + "[default value]"
        for piece in chunks:
            self.text("llm", piece)
        text = "".join(chunks)
        self.node_finished(started, {"text": text}, tokens=tokens)
        return text

    def end(self, outputs: dict[str, Any]) -> None:
        self.node_finished(self.node_started("end", "end", "End", outputs), outputs)
        self.finish("partial-succeeded" if self.run.exceptions_count else "succeeded", outputs)

    def finish(self, status: str, outputs: dict[str, Any] | None, error: str | None = None) -> None:
        """End the run and publish ``workflow_finished`` (at once, no pacing)."""
        run = self.run
        run.update(status=status, outputs=outputs, error=error, finished_at=time.time())
        self.emu.state.count("completed", run.key_fp, run.user)
        run.publish(run.envelope("workflow_finished", run.finished_data()))

    def error_event(self) -> None:
        """Dify's ``error`` event: no task_id, no data; the run fails and no terminal event follows."""
        run = self.run
        fault = run.fault
        message = str(fault.message if fault else "Emulated failure")
        code = (fault.code if fault else None) or "completion_request_error"
        status = 429 if code == "rate_limit_error" else 400
        self.wait(self.emu.event_interval)
        run.update(status="failed", error=message, finished_at=time.time())
        self.emu.state.count("completed", run.key_fp, run.user)
        run.publish({"event": "error", "workflow_run_id": run.id, "code": code, "message": message, "status": status})


# graphs -----------------------------------------------------------------------------------
def _text_graph(r: _Runner) -> None:
    inputs = r.run.inputs
    tone = str(inputs.get("tone") or "neutral").capitalize()
    chunks = [c.format(tone=tone, topic=inputs.get("topic", "")) for c in TEXT_CHUNKS]
    text = r.llm(chunks)
    if text is not None:
        r.end({"text": text})


def _report(r: _Runner) -> dict[str, Any]:
    """The tool node's CSV report, stored for download; returns the Dify file object."""
    run, fault = r.run, r.run.fault
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variable", "filename", "type", "transfer_method", "size", "sha256"])
    for name, files in run.files.items():
        writer.writerows([name, f.filename, f.type, f.transfer_method, f.size, f.sha256] for f in files)
    content = buf.getvalue().encode("utf-8")
    tool_file_id = str(uuid.uuid4())
    filename = str(fault.name) if fault is not None and fault.kind == "attachment_name" else "report.csv"
    generated = None
    if fault is not None and fault.kind == "attachment_size":
        content, generated = b"", int(fault.size or 0)
    stored = StoredAttachment(token=tool_file_id, name=filename, content=content, generated_size=generated)
    r.emu.state.add_attachment(stored)
    size = declared_size(stored.size, fault)
    if fault is not None and fault.kind == "attachment_size" and fault.declared is not None:
        size = int(fault.declared)
    return {
        "dify_model_identity": "__dify__file__",
        "id": tool_file_id,
        "tenant_id": r.emu.tenant_id,
        "type": "document",
        "transfer_method": "tool_file",
        "remote_url": None,
        "related_id": tool_file_id,
        "filename": filename,
        "extension": ".csv",
        "mime_type": "text/csv",
        "size": size,
        "url": signed_url(r.emu.files_base, tool_file_id, ".csv", r.emu.secret),
    }


def _document_graph(r: _Runner) -> None:
    document = r.run.files["document"][0]
    attachments = r.run.files.get("attachments", [])
    extracted = f"[{document.filename}: {max(document.size, 0)} bytes]"
    started = r.node_started("extract", "document-extractor", "Doc Extractor", {"document": document.filename})
    r.node_finished(started, {"text": extracted})
    summary_chunks = [
        f"Résumé of {document.filename}: ",
        f"{max(document.size, 0)} bytes, ",
        f"{len(attachments)} attachment(s), ",
        f"sha256 {document.sha256[:12]}.",
    ]
    summary = r.llm(summary_chunks, "Summarise")
    if summary is None:
        return
    started = r.node_started("report", "tool", "Write report", {"summary": summary})
    report = _report(r)
    r.node_finished(started, {"files": [report]})
    r.run.update(output_files=[report])
    r.end({"summary": summary, "report": report})


def _long_graph(r: _Runner) -> None:
    seconds = float(r.run.inputs.get("seconds") or 0)
    steps = max(1, int(r.run.inputs.get("steps") or 1))
    started = r.node_started("wait", "code", "Long work", {"seconds": seconds, "steps": steps})
    for step in range(1, steps + 1):
        r.wait(seconds / steps)
        r.text("wait", f"step {step}/{steps} done\n")
    r.node_finished(started, {"seconds": seconds})
    r.end({"text": f"Waited {seconds:g} seconds in {steps} step(s)"})


def _ask(r: _Runner, node_id: str, title: str, content: str, inputs: list[dict[str, Any]], actions: Any) -> None:
    """A human-input node: create its form, publish ``human_input_required`` and pause the run."""
    run = r.run
    started = r.node_started(node_id, "human-input", title, {"topic": run.inputs.get("topic")})
    form = HumanForm(
        run_id=run.id,
        app_code=run.app.code,
        node_id=node_id,
        node_title=title,
        form_content=content,
        inputs=inputs,
        actions=[dict(a) for a in actions],
        expiration_time=int(time.time() + r.emu.form_expiry_seconds),
    )
    r.emu.state.add_form(form)
    r.emit("human_input_required", form.data())
    run.update(status="paused", form=form, paused_nodes=[node_id], paused_node=started)
    run.publish(run.envelope("workflow_paused", run.paused_data()))


def _form_input(type_: str, name: str, default: Any = "") -> dict[str, Any]:
    return {
        "type": type_,
        "output_variable_name": name,
        "default": {"type": "constant", "selector": [], "value": default},
    }


def _human_input_graph(r: _Runner) -> None:
    topic = r.run.inputs.get("topic")
    content = f"Please review the draft about {topic}: {{{{#$output.comment#}}}}"
    _ask(r, "review", "Review", content, [_form_input("paragraph", "comment")], REVIEW_ACTIONS)


def _filled(r: _Runner, action: str, values: dict[str, Any]) -> dict[str, Any]:
    """The start of a resumption: ``workflow_started`` (reason ``resumption``),
    ``human_input_form_filled`` and the human-input node's ``node_finished``; returns the
    form's values (its defaults filled in) with ``action``."""
    run = r.run
    form = run.form
    assert form is not None
    started = run.paused_node or r.node_data(form.node_id, "human-input", form.node_title, {})
    r.index, r.previous = int(started["index"]), "start"
    r.workflow_started("resumption")
    title = next((a["title"] for a in form.actions if a["id"] == action), action)
    defaults = form.data()["resolved_default_values"]
    answer = {name: str(values.get(name) if values.get(name) is not None else defaults[name]) for name in defaults}
    rendered = form.form_content
    for name, value in answer.items():
        rendered = rendered.replace(f"{{{{#$output.{name}#}}}}", value)
    filled = {"node_id": form.node_id, "node_title": form.node_title, "rendered_content": rendered}
    if run.current:  # the newest server re-announces the resumed node before the filled form (C6)
        r.emit("node_started", started)
    r.emit("human_input_form_filled", {**filled, "action_id": action, "action_text": title})
    answer["action"] = action
    r.node_finished(started, answer)
    run.update(answers={**run.answers, form.node_id: answer})
    return answer


def _resume_graph(r: _Runner, action: str, values: dict[str, Any]) -> None:
    run = r.run
    comment = _filled(r, action, values)["comment"]
    if action != "approve":
        r.end({"decision": action, "comment": comment, "text": ""})
        return
    text = r.llm([f"Approved: {run.inputs.get('topic')}. ", f"Comment: {comment or '—'}"])
    if text is not None:
        r.end({"decision": action, "comment": comment, "text": text})


#: The options of the outline review's ``priority`` select (newer Dify's ``select`` form input,
#: ``option_source`` a constant list; the emulator resolves a default for it, "normal").
PRIORITIES = ["low", "normal", "high"]

SIGN_OFF_ACTIONS = [
    {"id": "sign", "title": "Sign off", "button_style": "primary"},
    {"id": "reject", "title": "Reject", "button_style": "default"},
]


def _two_forms_graph(r: _Runner) -> None:
    topic = r.run.inputs.get("topic")
    content = f"Outline for {topic}. Comment: {{{{#$output.comment#}}}} Priority: {{{{#$output.priority#}}}}"
    priority = {
        **_form_input("select", "priority", "normal"),
        "option_source": {"type": "constant", "value": PRIORITIES},
    }
    inputs = [_form_input("paragraph", "comment", "Looks fine"), priority]
    _ask(r, "outline_review", "Outline review", content, inputs, REVIEW_ACTIONS)


def _two_forms_resume(r: _Runner, action: str, values: dict[str, Any]) -> None:
    run = r.run
    assert run.form is not None
    first = run.form.node_id == "outline_review"
    answer = _filled(r, action, values)
    if first and action == "approve":
        content = f"Sign off {run.inputs.get('topic')} as {{{{#$output.signature#}}}}"
        _ask(
            r,
            "sign_off",
            "Final sign-off",
            content,
            [_form_input("text-input", "signature", "emulator")],
            SIGN_OFF_ACTIONS,
        )
        return
    outline = run.answers.get("outline_review", answer)
    outputs = {
        "outline_action": outline["action"],
        "comment": outline["comment"],
        "priority": outline["priority"],
        "sign_off_action": None if first else answer["action"],
        "signature": None if first else answer["signature"],
    }
    r.end(outputs)


# chat-family graphs (user-scoped OpenAPI) ----------------------------------------------------
def _message(r: _Runner, name: str, **fields: Any) -> None:
    """A chat-family event: ``conversation_id``, ``message_id`` and ``created_at`` in the envelope."""
    run = r.run
    body: dict[str, Any] = {"event": name, "task_id": run.task_id, "id": run.message_id}
    if run.app.kind == "advanced_chat":
        body["workflow_run_id"] = run.id
    body.update(message_id=run.message_id, conversation_id=run.conversation_id, created_at=int(run.created_at))
    body.update(fields)
    run.publish(body)


def _answer_chunks(r: _Runner) -> list[str]:
    run = r.run
    subject = run.query if run.query is not None else str(run.inputs.get("topic") or "")
    return ["You asked: ", subject, ". ", "Voilà — ", "a réponse."]


def _message_end(r: _Runner, answer: str) -> None:
    tokens = 17 * 5 + len(answer)
    usage: dict[str, Any] = {"prompt_tokens": 17, "completion_tokens": tokens - 17, "total_tokens": tokens}
    usage.update(total_price=str(round(tokens * 2e-6, 7)), currency="USD", latency=r.emu.event_interval)
    r.wait(r.emu.event_interval)
    _message(r, "message_end", metadata={"usage": usage, "retriever_resources": []}, files=[])


def _chat_graph(r: _Runner) -> None:
    """Basic chat and completion: ``message`` events then ``message_end`` (no workflow events)."""
    chunks = _answer_chunks(r)
    for piece in chunks:
        r.wait(r.emu.event_interval)
        _message(r, "message", answer=piece)
    answer = "".join(chunks)
    run = r.run
    run.update(status="succeeded", outputs={"answer": answer}, finished_at=time.time(), total_tokens=17 * 5)
    r.emu.state.count("completed", run.key_fp, run.user)
    _message_end(r, answer)


def _advanced_chat_graph(r: _Runner) -> None:
    """Chatflow: workflow and node events, the LLM's answer as ``message`` events, an answer
    node, ``workflow_finished`` and then ``message_end``."""
    chunks = _answer_chunks(r)
    started = r.node_started("llm", "llm", "LLM", {"query": r.run.query})
    for piece in chunks:
        r.wait(r.emu.event_interval)
        _message(r, "message", answer=piece)
    answer = "".join(chunks)
    r.node_finished(started, {"text": answer}, tokens=17 * len(chunks) + len(answer))
    r.node_finished(r.node_started("answer", "answer", "Answer", {"answer": answer}), {"answer": answer})
    r.finish("succeeded", {"answer": answer})
    _message_end(r, answer)


_GRAPHS = {
    "text": _text_graph,
    "document": _document_graph,
    "long": _long_graph,
    "human_input": _human_input_graph,
    "human_input_two": _two_forms_graph,
    "two_forms": _two_forms_graph,  # the Service API's TWO_FORMS_APP_KEY app
    "chat": _chat_graph,
    "completion": _chat_graph,
    "advanced_chat": _advanced_chat_graph,
}
#: Kinds whose graph has no ``workflow_started`` / start node (basic chat, completion).
_MESSAGE_ONLY = frozenset({"chat", "completion"})
_RESUMES = {"human_input": _resume_graph, "human_input_two": _two_forms_resume, "two_forms": _two_forms_resume}


def _execute(emu: DifyEmulator, run: DifyRun, body: Any) -> None:
    runner = _Runner(emu, run)
    try:
        body(runner)
    except _Stopped:
        runner.finish("stopped", None, error=STOPPED_BY_USER)
    except _Shutdown:
        logger.debug("run %s abandoned: emulator stopping", run.id)
    except Exception:
        logger.exception("emulated run %s crashed", run.id)
        runner.finish("failed", None, error="Internal Server Error, please contact support.")


def _spawn(emu: DifyEmulator, run: DifyRun, body: Any) -> None:
    threading.Thread(target=_execute, args=(emu, run, body), name=f"dify-run-{run.id[:8]}", daemon=True).start()


def start(emu: DifyEmulator, run: DifyRun) -> None:
    """Execute ``run`` from its start in a background thread."""
    graph = _GRAPHS[run.app.kind]

    def body(r: _Runner) -> None:
        if run.app.kind in _MESSAGE_ONLY:
            graph(r)
            return
        r.workflow_started("initial")
        if r.kind == "error_event":
            r.error_event()
            return
        r.start()
        graph(r)

    _spawn(emu, run, body)


def resume(emu: DifyEmulator, run: DifyRun, action: str, values: dict[str, Any]) -> None:
    """Resume a paused run after its form was submitted."""
    run.update(status="running", paused_nodes=[])
    graph = _RESUMES[run.app.kind]
    _spawn(emu, run, lambda r: graph(r, action, values))


def stop_paused(emu: DifyEmulator, run: DifyRun) -> None:
    """A stop of a paused run ends it at once (no thread is executing it)."""
    _Runner(emu, run).finish("stopped", None, error=STOPPED_BY_USER)
