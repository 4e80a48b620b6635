"""Headless Chromium for the neuron pages: the system browser (Debian's `chromium` and `chromium-driver`) driven by
selenium, with flags that work offline and in a container. Used by the browser tests and to take the README's
screenshot:

    python -m anneuron.devtools.browser results/demo-planted/pages/index.html#L2N892 docs/pages-screenshot.png

selenium is imported only here (the pipeline itself never needs a browser).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def find_chromium() -> tuple[str | None, str | None]:
    """(browser, driver) executables: $ANNEURON_CHROMIUM / $ANNEURON_CHROMEDRIVER, else what is on PATH."""
    browser = os.environ.get("ANNEURON_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("ANNEURON_CHROMEDRIVER") or shutil.which("chromedriver")
    return browser, driver


def missing() -> str | None:
    """Why no browser can run here (None when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements.txt pins it)"
    browser, driver = find_chromium()
    if not browser or not driver:
        return ("no Chromium: install Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver; .ci/run does it as root)")
    return None


@contextmanager
def chromium(width: int = 1360, height: int = 1800) -> Iterator:
    """A headless Chromium WebDriver with a fresh profile and the browser console log recorded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_chromium()
    if not browser or not driver_path:
        raise RuntimeError(missing())
    profile = tempfile.mkdtemp(prefix="anneuron-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for f in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_ready(driver, timeout: float = 20) -> str:
    """Wait until the page has rendered its view; returns the view's name (index, neuron, token, error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return !!(window.ANNEURON && window.ANNEURON.ready)"))
    return driver.execute_script("return window.ANNEURON.view")


def url_of(page: str) -> str:
    """A path (with an optional #fragment) as a file:// URL; URLs pass through."""
    if "://" in page:
        return page
    path, _, fragment = page.partition("#")
    return Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")


def screenshot(page: str, out: str | Path, width: int = 1280, full: bool = True) -> dict:
    """Open `page`, wait for its view, and save a PNG of the whole page (or the first screen)."""
    with chromium(width, 1000) as d:
        d.get(url_of(page))
        view = wait_ready(d)
        if full:
            height = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(width, int(height) + 40)
            time.sleep(0.3)
        d.save_screenshot(str(out))
        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        return {"view": view, "render_ms": d.execute_script("return window.ANNEURON.renderMs"), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", help="index.html path or URL, with an optional #L{layer}N{neuron}")
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--first-screen", action="store_true", help="only the first screen, not the whole page")
    args = ap.parse_args()
    res = screenshot(args.page, args.out, args.width, full=not args.first_screen)
    print(res)
    if res["errors"]:
        raise SystemExit(f"console errors: {res['errors']}")


if __name__ == "__main__":
    main()
