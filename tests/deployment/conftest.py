"""``hitl_deployment``: the human-in-the-loop deployment (``tests/hitl_deployment.py``), shared by the
tests that use it as long as they follow one another on a pytest worker.

It is started by the first such test and stopped after the last of a row (when the worker's next
test does not use it, or there is none), so that no idle deployment takes CPU from the other
deployment tests of the worker; a later HITL test starts a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.hitl_deployment import HitlDeployment
from tests.hitl_deployment import hitl_deployment as start_hitl_deployment

FIXTURE = "hitl_deployment"
_shared: list[tuple[contextlib.ExitStack, HitlDeployment]] = []


@pytest.fixture
def hitl_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HitlDeployment]:
    """The running HITL deployment of this worker, started now if none is."""
    if not _shared:
        stack = contextlib.ExitStack()
        try:
            shared = stack.enter_context(start_hitl_deployment(tmp_path_factory.mktemp("hitl-deployment")))
        except BaseException:
            stack.close()
            raise
        _shared.append((stack, shared))
    yield _shared[0][1]


def _stop_shared() -> None:
    while _shared:
        stack, _deployment = _shared.pop()
        stack.close()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _shared and (nextitem is None or FIXTURE not in getattr(nextitem, "fixturenames", ())):
        _stop_shared()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_shared()
