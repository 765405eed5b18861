"""A real browser for the end-to-end tests (the hub and dev cloud come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from .hubflow import launch


@pytest.fixture(scope="package")
def browser():
    # Package scope, not session: Playwright's sync API keeps an event loop running on this
    # thread while it is open, which would break the asyncio tests that run after tests/e2e.
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "hub" in item.fixturenames:
        hub = item.funcargs["hub"]
        tail = hub.processes.log_tail("jupyterhub", 40)
        report.sections.append(("hub log (tail)", "\n".join(tail)))
