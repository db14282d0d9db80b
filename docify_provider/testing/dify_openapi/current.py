"""What the current Dify server adds on the account OpenAPI where its documents say otherwise (Part C).

Only what is the OpenAPI's own: its 401 wording (C6). The rest of Part C is the same server on
both APIs and lives once in :mod:`docify_provider.testing.dify.current`, which the OpenAPI
handler inherits through the Service-API handler: the worker's ``error`` frame for rejected
inputs (C1; ``WorkerRejection``, ``check_inputs``), ``TYPE`` pause reasons (C4) and the
re-attach (C3). Each behaviour applies only when the emulator's ``server_profile`` is
``"current"`` (the default), so that ``"documented"`` keeps the wire of Dify's documents.
"""

from __future__ import annotations

#: The hint of a current server's 401 ``token_expired`` (Part C6).
TOKEN_EXPIRED_HINT = "Re-authenticate to continue (e.g. re-run your login command)"  # noqa: S105 (not a secret)
#: Current servers answer an unknown (or revoked) token with this message (Part C6).
UNKNOWN_TOKEN = "Invalid or unknown bearer token."  # noqa: S105 (a message)
