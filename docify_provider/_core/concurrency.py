"""The seam between the async clients and the sync ones generated from them (``scripts/unasync.py``).

``unasync`` only renames tokens, so what differs between the two by more than a name is given a
pair of names here: the async source uses ``async_sleep`` (typed ``AsyncSleep``), and its
generated sync twin ``sync_sleep`` (``SyncSleep``). Both look ``asyncio.sleep`` / ``time.sleep``
up when called, so a test that patches those modules reaches the clients too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

#: A pause between polls of the async clients (``asyncio.sleep`` or one that also reports).
AsyncSleep = Callable[[float], Awaitable[None]]
#: A pause between polls of the sync clients (``time.sleep`` or one that also reports).
SyncSleep = Callable[[float], None]


async def async_sleep(seconds: float) -> None:
    """Pause the running task (not the event loop) for ``seconds``."""
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Pause the calling thread for ``seconds``."""
    time.sleep(seconds)
