"""Checks a rendered report in a real browser: headless Chromium loads it, takes a screenshot, and reads back
the status the page's own script wrote (images loaded, broken images, script errors)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrowserCheck", "check_in_chromium", "find_chromium"]

_FLAGS = [  # headless, and quiet on a machine without network (no background connections)
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=10000",
]


@dataclass(frozen=True)
class BrowserCheck:
    images: int
    broken: int
    errors: int
    screenshot: Path


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium found: install it with `apt-get install chromium`")


def check_in_chromium(
    html_path: str | os.PathLike, screenshot: str | os.PathLike, timeout: float = 120
) -> BrowserCheck:
    """Load `html_path` in headless Chromium; save a full-width screenshot; return the page's status."""
    browser = find_chromium()
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        common = [browser, *_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0:
            raise RuntimeError(f"chromium --dump-dom failed ({dom.returncode}): {dom.stderr[-2000:]}")
        shot = subprocess.run(
            [*common, f"--screenshot={Path(screenshot).resolve()}", "--window-size=1200,3000", url],
            capture_output=True, text=True, timeout=timeout,
        )
        if shot.returncode != 0 or not Path(screenshot).exists():
            raise RuntimeError(f"chromium --screenshot failed ({shot.returncode}): {shot.stderr[-2000:]}")
    match = re.search(r'data-report-status="images=(\d+);broken=(\d+);errors=(\d+)"', dom.stdout)
    if match is None:
        raise RuntimeError("the report's status script did not run (no data-report-status in the DOM)")
    images, broken, errors = map(int, match.groups())
    return BrowserCheck(images, broken, errors, Path(screenshot))
