"""A short-lived cache of the free read that describes an app: Docify's scenario info, Dify's ``/parameters``.

Every run task validates its inputs against that description before anything is uploaded or
paid for, so every task used to read it again: one more round trip to the service per document,
for an answer that changes only when someone edits the app. The hooks keep it here for
``info_cache_seconds`` (a connection extra; 0 switches the cache off) and read it again, once,
whenever inputs fail validation against a cached copy, so an edited app never blocks a valid input.

Two layers, because a task is its own process in a real deployment:

* process memory: ``dag.test()``, a batch's items and anything else that runs tasks in one process;
* a small file per entry in a folder of this OS user's (``<tmp>/airflow-provider-docify-<uid>``,
  mode 0700, checked to be the user's own before use; files 0600, written atomically): every task
  process on the same machine (LocalExecutor, a Celery worker host). A pod per task
  (KubernetesExecutor) starts with an empty folder and gains nothing.

Entries are named by what was read and a SHA-256 digest of the base URL and the key together: never
the key, nor anything from which it could be read back. The value is the server's JSON as it came.
Anything unexpected (a folder that is not ours, a torn file, a full disk) is a cache miss, never an
error: the cache only ever saves a read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from typing import Any

#: Name of the folder under the system's temporary directory (one per OS user).
FOLDER_PREFIX = "airflow-provider-docify-"


def entry_name(kind: str, base_url: str, api_key: Any) -> str:
    """The cache entry of ``kind`` (``docify-scenario-info``, ``dify-parameters``) for one server and key.

    ``api_key`` may be a ``Secret``: its clear value goes only into the digest.
    """
    reveal = getattr(api_key, "reveal", None)
    key = reveal() if callable(reveal) else str(api_key or "")
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{key}".encode()).hexdigest()[:40]
    return f"{kind}-{digest}"


def default_folder() -> str:
    return os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}{os.getuid()}")


class AppDescriptionCache:
    """Entries ``name -> (stored at, JSON value)`` in process memory and, when usable, in ``folder``.

    Thread-safe for the memory layer; the file layer is written atomically (``os.replace``).
    """

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder or default_folder()
        self._memory: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._folder_ok: bool | None = None

    # -- reading --------------------------------------------------------------------------------

    def get(self, name: str, ttl: float) -> tuple[Any, float] | None:
        """``(value, age in seconds)`` of a fresh entry (younger than ``ttl``), else None."""
        if ttl <= 0:
            return None
        now = time.time()
        with self._lock:
            hit = self._memory.get(name)
        if hit is None:
            hit = self._read_file(name)
            if hit is not None:
                with self._lock:
                    self._memory[name] = hit
        if hit is None:
            return None
        age = now - hit[0]
        if not 0 <= age < ttl:  # stale, or written by a clock ahead of ours
            return None
        return hit[1], age

    def _read_file(self, name: str) -> tuple[float, Any] | None:
        if not self._usable_folder():
            return None
        try:
            with open(os.path.join(self.folder, name + ".json"), encoding="utf-8") as fh:
                data = json.load(fh)
            return float(data["stored_at"]), data["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- writing --------------------------------------------------------------------------------

    def put(self, name: str, value: Any) -> None:
        """Keep ``value`` (the server's JSON) as ``name``, now."""
        entry = (time.time(), value)
        with self._lock:
            self._memory[name] = entry
        if not self._usable_folder():
            return
        with contextlib.suppress(OSError, TypeError, ValueError):
            fd, partial = tempfile.mkstemp(prefix=".", suffix=".part", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"stored_at": entry[0], "value": value}, fh)
                os.replace(partial, os.path.join(self.folder, name + ".json"))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(partial)

    def drop(self, name: str) -> None:
        """Forget ``name`` everywhere: the next read asks the server."""
        with self._lock:
            self._memory.pop(name, None)
        if self._usable_folder():
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.folder, name + ".json"))

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    # -- the folder -----------------------------------------------------------------------------

    def _usable_folder(self) -> bool:
        """True when ``folder`` exists (created 0700 if missing), is a real folder, ours, and private.

        Another user could otherwise plant descriptions that decide how inputs are validated.
        """
        if self._folder_ok is None:
            try:
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
                info = os.lstat(self.folder)
                self._folder_ok = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
            except OSError:
                self._folder_ok = False
        return self._folder_ok


#: The cache every hook of this process shares.
CACHE = AppDescriptionCache()

__all__ = ["CACHE", "FOLDER_PREFIX", "AppDescriptionCache", "default_folder", "entry_name"]
