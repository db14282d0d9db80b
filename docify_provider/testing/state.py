"""The emulator's shared, lock-protected state: keys, faults, records, uploads, counters.

Handler threads run concurrently (one per connection), so every read and write of shared
state goes through :class:`EmulatorState` under a single lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from docify_provider.testing.faults import Fault
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.records import (
    DownloadRecord,
    RequestRecord,
    StoredAttachment,
    UploadRecord,
)
from docify_provider.testing.scenarios import FileInput


@dataclass(frozen=True)
class KeyBinding:
    """The scenario an API key is bound to (stored by key fingerprint only)."""

    scenario_code: str
    forbidden: bool = False


class EmulatorState:
    """Thread-safe store shared by the request handlers and the ``DocifyEmulator`` API."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._keys: dict[str, KeyBinding] = {}
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._uploads: list[UploadRecord] = []
        self._downloads: list[DownloadRecord] = []
        self._files: dict[tuple[str, str], FileInput] = {}
        self._attachments: dict[str, StoredAttachment] = {}
        #: (counter name, key fingerprint, user) -> count
        self._counts: Counter[tuple[str, str, str | None]] = Counter()

    # keys
    def add_key(self, key: str, scenario_code: str, forbidden: bool = False) -> None:
        with self.lock:
            self._keys[fingerprint(key)] = KeyBinding(scenario_code, forbidden)

    def binding(self, key_fp: str | None) -> KeyBinding | None:
        with self.lock:
            return self._keys.get(key_fp) if key_fp else None

    # faults
    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def faults(self) -> list[Fault]:
        with self.lock:
            return list(self._faults)

    def take_fault(self, endpoint: str, key_fp: str | None, phase: str) -> Fault | None:
        """Consume and return the first live fault matching the request, if any."""
        with self.lock:
            for fault in self._faults:
                if fault.phase != phase or fault.exhausted or not fault.applies_to(endpoint):
                    continue
                if fault.key is not None and fingerprint(fault.key) != key_fp:
                    continue
                fault.hits += 1
                return fault
        return None

    # records
    def record_request(self, record: RequestRecord) -> None:
        with self.lock:
            self._requests.append(record)

    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._requests)

    def record_download(self, record: DownloadRecord) -> None:
        with self.lock:
            self._downloads.append(record)

    def downloads(self) -> list[DownloadRecord]:
        with self.lock:
            return list(self._downloads)

    def add_upload(self, record: UploadRecord) -> None:
        with self.lock:
            self._uploads.append(record)
            self._files[(record.key_fingerprint, record.upload_file_oid)] = FileInput(
                name=record.file_name,
                sha256=record.sha256,
                size=record.size,
                file_type=record.file_type,
                upload_file_oid=record.upload_file_oid,
            )

    def uploads(self) -> list[UploadRecord]:
        with self.lock:
            return list(self._uploads)

    def uploaded_file(self, key_fp: str | None, oid: str) -> FileInput | None:
        """Docify uploads are visible to the key (account) that made them only; with
        ``key_fp`` None (Dify: uploads belong to the workspace) any key's upload is found."""
        with self.lock:
            if key_fp is not None:
                return self._files.get((key_fp, oid))
            return next((f for (_, o), f in self._files.items() if o == oid), None)

    # attachments
    def add_attachment(self, attachment: StoredAttachment) -> None:
        with self.lock:
            self._attachments[attachment.token] = attachment

    def attachment(self, token: str) -> StoredAttachment | None:
        with self.lock:
            return self._attachments.get(token)

    # counters
    def count(self, name: str, key_fp: str, user: str | None = None) -> None:
        """Add one to counter ``name`` for that key (and end user, where the API has one)."""
        with self.lock:
            self._counts[(name, key_fp, user)] += 1

    def total(self, name: str, key_fp: str | None = None, user: str | None = None) -> int:
        """Counter ``name`` summed over everything, or only for ``key_fp`` and/or ``user``."""
        with self.lock:
            return sum(
                n
                for (counter, k, u), n in self._counts.items()
                if counter == name and key_fp in (None, k) and user in (None, u)
            )

    def per_key(self, name: str) -> dict[str, int]:
        """Counter ``name`` per key fingerprint (end users summed)."""
        per: Counter[str] = Counter()
        with self.lock:
            for (counter, key_fp, _), n in self._counts.items():
                if counter == name:
                    per[key_fp] += n
        return dict(per)

    def count_started(self, key_fp: str) -> None:
        self.count("started", key_fp)

    def count_completed(self, key_fp: str) -> None:
        self.count("completed", key_fp)

    def started(self, key_fp: str | None) -> int:
        return self.total("started", key_fp)

    def completed(self, key_fp: str | None) -> int:
        return self.total("completed", key_fp)

    def reset(self) -> None:
        """Forget records, uploads, attachments, counters and faults; keep keys."""
        with self.lock:
            self._faults.clear()
            self._requests.clear()
            self._uploads.clear()
            self._downloads.clear()
            self._files.clear()
            self._attachments.clear()
            self._counts.clear()
