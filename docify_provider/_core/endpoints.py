"""One API operation as data: what the transport needs to know to send it safely."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One API operation.

    ``repeatable`` says whether re-sending after the request may have reached the server is safe:
    true for reads, uploads (an extra upload costs nothing) and stops, false for runs (they cost
    money and have no idempotency key). ``path`` may hold ``{name}`` fields (``format`` fills them).
    """

    name: str
    method: str
    path: str
    repeatable: bool
    streaming: bool = False
    #: A lookup of one thing by id: a 404 means the thing is unknown, not that the base URL is wrong.
    lookup: bool = False
    #: For a non-repeatable request that is not a run: what may already have happened when its
    #: answer was lost (the error says so instead of "the run may have been billed").
    effect: str | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def format(self, **fields: str) -> Endpoint:
        """This operation on a concrete path (``/workflows/run/{run_id}`` -> ``/workflows/run/abc``)."""
        from urllib.parse import quote

        path = self.path.format(**{k: quote(str(v), safe="") for k, v in fields.items()})
        return dataclasses.replace(self, path=path)
