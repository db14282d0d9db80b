"""A bundled Dify Workflow Service API emulator (``/v1``, app API keys), for tests over real HTTP.

It shares no code with the provider's client. See :class:`DifyEmulator`.

    from docify_provider.testing.dify import DifyEmulator, TEXT_APP_KEY

    with DifyEmulator(ping_interval=0.2) as emu:
        ...  # point the client at emu.base_url (ends in /v1) with TEXT_APP_KEY
"""

from docify_provider.testing.dify.apps import (
    DISABLED_APP_KEY,
    DOCUMENT_APP_KEY,
    HUMAN_INPUT_APP_KEY,
    LONG_APP_KEY,
    TEXT_APP_KEY,
    TWO_FORMS_APP_KEY,
    DifyApp,
)
from docify_provider.testing.dify.emulator import DifyEmulator
from docify_provider.testing.dify.runs import DifyRun, HumanForm

__all__ = [
    "DISABLED_APP_KEY",
    "DOCUMENT_APP_KEY",
    "HUMAN_INPUT_APP_KEY",
    "LONG_APP_KEY",
    "TEXT_APP_KEY",
    "TWO_FORMS_APP_KEY",
    "DifyApp",
    "DifyEmulator",
    "DifyRun",
    "HumanForm",
]
