"""Shared fixtures: a fast Docify emulator on 127.0.0.1, clients for its keys, Airflow connections.

Every client test talks HTTP over a real socket to the bundled emulator (real SSE framing, real
dropped connections); nothing in the code under test is mocked. Retry settings are tiny so that
the retry paths run in milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Airflow reads AIRFLOW_HOME when it is first imported: point it at a throw-away folder before any
# test module imports airflow, so that no test touches ~/airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="docify-tests-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from docify_provider.docify import AsyncDocifyClient, ClientConfig, DocifyClient  # noqa: E402
from docify_provider.testing import DocifyEmulator, DownloadRecord, RequestRecord  # noqa: E402
from docify_provider.testing.samples import SAMPLE_PNG  # noqa: E402
from helpers import BACKENDS, settled  # noqa: E402

pytest_plugins = ["docify_provider.testing.pytest_plugin", "airflow_helpers"]

#: Retry and timeout settings that keep every retry path under a second.
FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "retry_after_cap": 0.2,
    "idle_timeout": 1,
    "connect_timeout": 2,
    "read_timeout": 10,
    "max_retries": 3,
}


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def app_description_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Each test starts with an empty app-description cache (``_core.app_cache``) in a folder of its own,
    so no test sees a description another test (or an earlier session) read; the cache stays on."""
    from docify_provider._core.app_cache import CACHE

    folder = tmp_path_factory.mktemp("app-cache")
    folder.chmod(0o700)
    monkeypatch.setattr(CACHE, "folder", str(folder))
    monkeypatch.setattr(CACHE, "_folder_ok", None)
    CACHE.clear_memory()
    yield CACHE
    CACHE.clear_memory()


@pytest.fixture
def emulator() -> Iterator[DocifyEmulator]:
    """A fresh emulator with quick pings and events (state never leaks between tests)."""
    with DocifyEmulator(**BACKENDS["docify"].options) as emu:
        yield emu


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every ``airflow_line`` mark says why the test is run on every Airflow line (scripts/test.sh)."""
    for item in items:
        for mark in item.iter_markers("airflow_line"):
            if not (mark.args and isinstance(mark.args[0], str) and mark.args[0].strip()):
                raise pytest.UsageError(f"{item.nodeid}: airflow_line needs its reason, airflow_line('why')")


def _emulator_marks(item: pytest.Item) -> list[pytest.Mark]:
    """The item's ``emulator`` marks, the farthest (module) first, the test's own last."""
    return list(reversed(list(item.iter_markers("emulator"))))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``emulator(each=(option, values))`` runs each test that uses ``emu`` once per value of ``option``."""
    if "emu" not in metafunc.fixturenames:
        return
    for mark in _emulator_marks(metafunc.definition):
        if "each" in mark.kwargs:
            option, values = mark.kwargs["each"]
            metafunc.parametrize("emu", [{option: v} for v in values], indirect=True, ids=list(values))
            return


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh emulator of the test's backend, stopped after the test (state never leaks between tests).

    The backend is the one the test module's folder mirrors (``tests/docify``, ``tests/dify``,
    ``tests/dify_openapi``), or the one an ``emulator("<backend>")`` mark names; it starts with the
    test-sized intervals of ``helpers.BACKENDS``, overridden by the keyword arguments of the
    ``emulator`` marks (the module's ``pytestmark``, then the test's) and by the ``each`` parameter.
    """
    name = request.path.parent.name
    options: dict[str, Any] = {}
    for mark in _emulator_marks(request.node):
        name = mark.args[0] if mark.args else name
        options.update({k: v for k, v in mark.kwargs.items() if k != "each"})
    options.update(getattr(request, "param", None) or {})
    if name not in BACKENDS:
        raise pytest.UsageError(f"{request.node.nodeid}: no emulator for folder {name!r}; mark it emulator(<backend>)")
    backend = BACKENDS[name]
    with backend.emulator(**{**backend.options, **options}) as started:
        yield started


@pytest.fixture
def make_config(emulator: DocifyEmulator) -> Callable[..., ClientConfig]:
    """``make_config(key, **overrides)``: a ClientConfig for the emulator with fast retries."""

    def make(key: str, **overrides: Any) -> ClientConfig:
        return ClientConfig(api_key=key, **{"base_url": emulator.base_url, **FAST, **overrides})

    return make


@pytest.fixture
def make_client(make_config: Callable[..., ClientConfig]) -> Iterator[Callable[..., DocifyClient]]:
    """``make_client(key, **config_overrides)``: a DocifyClient, closed after the test."""
    clients: list[DocifyClient] = []

    def make(key: str, **overrides: Any) -> DocifyClient:
        client = DocifyClient(make_config(key, **overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_async_client(make_config: Callable[..., ClientConfig]) -> Callable[..., AsyncDocifyClient]:
    """``make_async_client(key, **config_overrides)``; use it as ``async with make_async_client(...) as c``."""

    def make(key: str, **overrides: Any) -> AsyncDocifyClient:
        return AsyncDocifyClient(make_config(key, **overrides))

    return make


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def docify_conn(monkeypatch: pytest.MonkeyPatch, emulator: DocifyEmulator) -> Callable[..., str]:
    """``docify_conn(key, conn_id="docify_test", host=<emulator>, **extra)``: an Airflow connection.

    Defined the way users do in deployments and CI, as ``AIRFLOW_CONN_<ID>`` JSON; the hook reads
    it through ``BaseHook.get_connection`` without a metadata database. Fast retry extras are set
    unless overridden. Returns the connection id.
    """

    def make(key: str | None, conn_id: str = "docify_test", host: str | None = None, **extra: Any) -> str:
        extras = {"max_retries": 2, "idle_timeout": 1, "connect_timeout": 2, **extra}
        conn: dict[str, Any] = {
            "conn_type": "docify",
            "host": emulator.base_url if host is None else host,
            "extra": extras,
        }
        if key is not None:
            conn["password"] = key
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


@pytest.fixture
def make_hook() -> Iterator[Callable[[str], Any]]:
    """``make_hook(conn_id)``: a ``DocifyHook``, its client closed after the test."""
    from docify_provider.hooks.docify import DocifyHook

    created: list[DocifyHook] = []

    def make(conn_id: str) -> DocifyHook:
        created.append(DocifyHook(docify_conn_id=conn_id))
        return created[-1]

    yield make
    for hook in created:
        hook.close()


@pytest.fixture
def invoice_png(tmp_path: Path) -> Path:
    """A small PNG invoice image on disk, ``<tmp_path>/inputs/acme_invoice.png``."""
    path = tmp_path / "inputs" / "acme_invoice.png"
    path.parent.mkdir()
    path.write_bytes(SAMPLE_PNG)
    return path


@pytest.fixture
def requests_to() -> Callable[..., list[RequestRecord]]:
    """``requests_to(emulator, endpoint, at_least=0)``: the emulator's records for one endpoint."""

    def get(emu: DocifyEmulator, endpoint: str, at_least: int = 0) -> list[RequestRecord]:
        return settled(lambda: [r for r in emu.requests if r.endpoint == endpoint], at_least)

    return get


@pytest.fixture
def worker_error_streams() -> Callable[[Any], list[str]]:
    """``worker_error_streams(dify_emulator)``: how each body of a run its worker rejected ended
    (Part C1; either Dify emulator), once one has: "client closed" or "idle" (the server's close)."""

    def get(emu: Any) -> list[str]:
        return settled(lambda: list(emu.worker_error_streams), 1)

    return get


@pytest.fixture
def downloads_of() -> Callable[..., list[DownloadRecord]]:
    """``downloads_of(emulator, at_least=0)``: the emulator's download records."""

    def get(emu: DocifyEmulator, at_least: int = 0) -> list[DownloadRecord]:
        return settled(lambda: emu.downloads, at_least)

    return get


@pytest.fixture
def memory_object_storage() -> Iterator[None]:
    """``memory://`` for ``ObjectStoragePath``: fsspec's in-memory filesystem, as a provider would add s3.

    No installed provider registers a remote filesystem, and a remote one is what tells the object
    storage path apart from the local one (on Airflow 3.0/3.1 every ObjectStoragePath is a pathlib.Path).
    """
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io.fs import _register_filesystems  # Airflow 3.1+
    except ImportError:  # Airflow 3.0
        from airflow.io import _register_filesystems

    registry = _register_filesystems()  # cached: the dict every ObjectStoragePath looks schemes up in
    registry["memory"] = lambda conn_id: MemoryFileSystem()  # type: ignore[index]
    try:
        yield
    finally:
        registry.pop("memory", None)  # type: ignore[attr-defined]
        MemoryFileSystem.store.clear()
        # Airflow caches the store it attached per scheme: drop it, or memory:// would stay usable
        # for the rest of the session (tests/airflow/test_output_targets.py checks it is refused).
        from airflow.sdk.io import store

        for alias in [a for a in store._STORE_CACHE if a == "memory" or a.startswith("memory-")]:
            store._STORE_CACHE.pop(alias, None)


#: Dify connections the Dify Airflow tests use, by app key of the Dify emulator.
DIFY_CONN_KEYS = {
    "dify_text": "app-EmuTextWorkflow0000000001",
    "dify_document": "app-EmuDocumentWorkflow00002",
    "dify_long": "app-EmuLongWorkflow000000003",
    "dify_human": "app-EmuHumanInputWorkflow004",
}


@pytest.fixture
def dify_conns(airflow_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh ``DifyEmulator`` and ``dify``-type connections ``DIFY_CONN_KEYS`` pointing at it."""
    from docify_provider.testing.dify import DifyEmulator

    with DifyEmulator(ping_interval=0.1, event_interval=0.002) as emu:
        for conn_id, key in DIFY_CONN_KEYS.items():
            extra = {"max_retries": 2, "idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10}
            conn = {"conn_type": "dify", "host": emu.base_url, "password": key, "extra": extra}
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        yield emu


@pytest.fixture
def openapi_conn(airflow_env: Any, dify_openapi_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``dify_openapi_emulator`` with the ``dify_openapi_default`` connection (its account token) on it."""
    from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN

    conn = {
        "conn_type": "dify_openapi",
        "host": dify_openapi_emulator.base_url,
        "password": ACCOUNT_TOKEN,
        "extra": {"max_retries": 2, "idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_OPENAPI_DEFAULT", json.dumps(conn))
    return dify_openapi_emulator
