"""The Dify emulator's state: the shared :class:`EmulatorState` plus runs and forms."""

from __future__ import annotations

from docify_provider.testing.dify.runs import DifyRun, HumanForm
from docify_provider.testing.state import EmulatorState


class DifyState(EmulatorState):
    """Thread-safe runs (by run id and task id) and human-input forms (by token)."""

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[str, DifyRun] = {}
        self._tasks: dict[str, DifyRun] = {}
        self._forms: dict[str, HumanForm] = {}

    def add_run(self, run: DifyRun) -> None:
        with self.lock:
            self._runs[run.id] = run
            self._tasks[run.task_id] = run

    def run(self, run_id: str) -> DifyRun | None:
        with self.lock:
            return self._runs.get(run_id)

    def run_by_task(self, task_id: str) -> DifyRun | None:
        with self.lock:
            return self._tasks.get(task_id)

    def runs(self) -> list[DifyRun]:
        """Every run, oldest first."""
        with self.lock:
            return list(self._runs.values())

    def add_form(self, form: HumanForm) -> None:
        with self.lock:
            self._forms[form.form_token] = form

    def form(self, token: str) -> HumanForm | None:
        with self.lock:
            return self._forms.get(token)

    def claim_form(self, form: HumanForm) -> bool:
        """Mark ``form`` submitted; False when it already was (a second submit)."""
        with self.lock:
            if form.submitted:
                return False
            form.submitted = True
            return True

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self._runs.clear()
            self._tasks.clear()
            self._forms.clear()
