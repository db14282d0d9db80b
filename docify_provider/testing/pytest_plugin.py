"""pytest fixtures for the Docify emulator.

Enable with ``pytest_plugins = ["docify_provider.testing.pytest_plugin"]``. Prefer the
function-scoped ``docify_emulator`` (fresh server, no state leaks between tests). The
session-scoped ``docify_emulator_session`` is shared by all tests; faults injected into it are
cleared after every test (records and counters are not: compare before/after values).
``dify_emulator`` is a function-scoped ``DifyEmulator`` with short intervals for tests
(pings every 0.2 s, idle close after 5 s). ``dify_openapi_emulator`` is the same for the
user-scoped OpenAPI (current paths; device-flow poll interval 0.2 s).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docify_provider.testing.dify import DifyEmulator
from docify_provider.testing.dify_openapi import DifyOpenAPIEmulator
from docify_provider.testing.emulator import DocifyEmulator

_SESSION_EMULATOR = pytest.StashKey[DocifyEmulator]()


@pytest.fixture
def docify_emulator() -> Iterator[DocifyEmulator]:
    """A started emulator with the default keys, stopped after the test."""
    with DocifyEmulator() as emulator:
        yield emulator


@pytest.fixture
def dify_emulator() -> Iterator[DifyEmulator]:
    """A started Dify emulator with the default app keys and test-sized intervals, stopped after the test."""
    with DifyEmulator(ping_interval=0.2, idle_close_seconds=5.0, event_interval=0.005) as emulator:
        yield emulator


@pytest.fixture
def dify_openapi_emulator() -> Iterator[DifyOpenAPIEmulator]:
    """A started Dify OpenAPI emulator (current paths, ``ACCOUNT_TOKEN``) with test-sized intervals."""
    with DifyOpenAPIEmulator(
        ping_interval=0.2, idle_close_seconds=5.0, event_interval=0.005, device_poll_interval=0.2
    ) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def docify_emulator_session(request: pytest.FixtureRequest) -> Iterator[DocifyEmulator]:
    """One emulator for the whole session (faults cleared after each test)."""
    with DocifyEmulator() as emulator:
        request.config.stash[_SESSION_EMULATOR] = emulator
        try:
            yield emulator
        finally:
            del request.config.stash[_SESSION_EMULATOR]


@pytest.fixture(autouse=True)
def _docify_emulator_session_clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    emulator = request.config.stash.get(_SESSION_EMULATOR, None)
    if emulator is not None:
        emulator.clear_faults()
