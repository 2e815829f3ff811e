"""Fixtures of the browser tests that more than one module asks for by name (none is autouse)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.pages import TIMEOUT_MS


@pytest.fixture
def patient_expect():
    """``expect`` waits up to ``TIMEOUT_MS`` (a loaded machine) in the test, then its default again.

    Ask for it with ``pytest.mark.usefixtures("patient_expect")``; a module with its own ``patient_expect`` keeps it.
    """
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)
