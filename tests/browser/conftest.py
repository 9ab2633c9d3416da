"""Browser tests: the ChatUI in Debian's chromium, driven by Playwright for Python.

They need /usr/bin/chromium (scripts/test.sh installs it with apt when run as root) and the built
bundle (scripts/test.sh builds it); without either they skip and say which is missing.
Screenshots go to $MOZAIKS_TEST_OUTPUT_DIR/browser (default: test-output/browser in the repo).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("MOZAIKS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # The host-app pages the tests fulfil through page.route have no IP address space, so
                 # Chromium's Local Network Access checks would refuse their WebSocket to 127.0.0.1.
                 "--disable-features=LocalNetworkAccessChecks"]
REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "chatui" / "dist" / "mozaiks-chat.js"


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} is missing: Debian's chromium package (scripts/test.sh installs it with apt "
                "when it runs as root)")
    if not BUNDLE.exists():
        return "the ChatUI bundle is not built (scripts/test.sh builds it; or `npm ci && npm run build` in chatui/)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason:
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(os.environ.get("MOZAIKS_TEST_OUTPUT_DIR") or REPO / "test-output") / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


class Shots:
    def __init__(self, page: Any, folder: Path, test_name: str) -> None:
        self.page = page
        self.folder = folder
        self.prefix = re.sub(r"[^\w-]+", "_", test_name)
        self.count = 0

    async def take(self, label: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.prefix}-{self.count:02d}-{label}.png"
        await self.page.screenshot(path=str(path))
        return path


async def _page(browser: Any, folder: Path, name: str, base_url: str) -> AsyncIterator[Any]:
    """A fresh browser context (own sessionStorage); collects page errors, and always leaves a
    screenshot of the final state."""
    context = await browser.new_context(viewport={"width": 1180, "height": 760}, base_url=base_url)
    opened = await context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("pageerror", lambda exc: opened.errors.append(str(exc)))  # type: ignore[attr-defined]
    opened.shots = Shots(opened, folder, name)  # type: ignore[attr-defined]
    yield opened
    try:
        await opened.shots.take("final")  # type: ignore[attr-defined]
    finally:
        await context.close()


@pytest.fixture
async def page(browser: Any, runtime: Any, screenshot_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A page on the test runtime."""
    async for opened in _page(browser, screenshot_dir, request.node.name, runtime.http_url):
        yield opened


@pytest.fixture
async def scripted_page(browser: Any, screenshot_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A page with no runtime behind it: tests/browser/scripted.py plays the broker and the socket."""
    from tests.browser.scripted import ORIGIN

    async for opened in _page(browser, screenshot_dir, request.node.name, ORIGIN):
        yield opened
