"""``report.pdf`` from ``index.html`` with a headless Chromium, when one is installed (the
report needs nothing else: no script, no network). Without one the pack is complete all the
same and the caller says why there is no PDF."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120.0


def find_browser() -> str | None:
    """Returns the path of the first Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(browser: str, html: Path, pdf: Path) -> str | None:
    """Prints ``html`` to ``pdf`` with ``browser`` in headless mode; returns None when the
    PDF was written, else why not (the browser's exit status or a timeout)."""
    with tempfile.TemporaryDirectory(prefix="coffer-pdf-") as profile:
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to start as root otherwise
        try:
            done = subprocess.run(
                args, capture_output=True, timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return f"{Path(browser).name} did not finish within {TIMEOUT_S:.0f} s"
        except OSError as exc:
            return f"{Path(browser).name} could not be started ({exc.strerror})"
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        pdf.unlink(missing_ok=True)
        return f"{Path(browser).name} exited with status {done.returncode} without a PDF"
    return None
