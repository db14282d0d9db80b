"""The ``client`` fixture of the Dify emulator tests (``test_dify_emulator.py`` and
``test_dify_emulator_faults.py``): an httpx client on the test's emulator, shared by both files.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from docify_provider.testing import DifyEmulator


@pytest.fixture
def client(emu: DifyEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url + "/", timeout=10) as c:
        yield c
