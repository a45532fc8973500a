"""A picture of one explorer panel over a run folder, as headless Chromium draws it.

    python examples/explore_screenshot.py OUT PANEL PNG [--width 1400] [--click CSS]
    python examples/explore_screenshot.py out frontier docs/explore_frontier.png \
        --click 'circle.point[data-key="ppo-3"]'

OUT is a folder `python -m minirl.examples.explore --out OUT` opens; PANEL is a tab's name
(generate, ledger, ppo, curves, reward, lab, frontier); --click clicks the first element that
matches a CSS selector after the panel has drawn (a point, to show its samples). The README's
screenshots in docs/ are made this way. Needs Flask, selenium (pip install -e '.[app,dev]') and
Debian's chromium and chromium-driver; the server listens on 127.0.0.1 only, for as long as the
picture takes. The browser tests drive the page through `launch` and `serving` below.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import threading
import time

from minirl.examples.explore import create_app
from minirl.examples.explorer import Explorer
from minirl.examples.run_folder import RunFolder, RunFolderError

PANELS = ("generate", "ledger", "ppo", "curves", "reward", "lab", "frontier")


def launch(width: int = 1400, height: int = 1000):
    """A headless Chromium under Selenium; RuntimeError saying what to install when there is none."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and driver):
        raise RuntimeError("no headless browser: needs selenium (pip install -e '.[dev]') and Debian's chromium and "
                           "chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--disable-gpu"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@contextlib.contextmanager
def serving(explorer: Explorer):
    """The explorer's app on a free port of 127.0.0.1, for as long as the block runs; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(explorer), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()


def screenshot(out: str, panel: str, png: str, width: int = 1400, click: str | None = None, wait_s: float = 30) -> None:
    """Open `out`, show `panel`, wait for it to draw, click `click` if given (waiting up to `wait_s` for it to
    appear), and save the panel as `png`."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    explorer = Explorer(RunFolder.open(out))  # before the browser: a bad folder is refused first
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    browser = launch(width, 2400)
    try:
        with serving(explorer) as url:
            browser.get(url)
            browser.find_element(By.CSS_SELECTOR, f'.tab[data-panel="{panel}"]').click()
            wait = WebDriverWait(browser, wait_s)
            wait.until(lambda b: b.execute_script("return document.readyState") == "complete")
            time.sleep(1.0)  # the panel's request and drawing
            if click:
                try:
                    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, click))[0].click()
                except TimeoutException:
                    raise RuntimeError(f"nothing on the {panel} panel matches --click {click!r} after "
                                       f"{wait_s:g} s; check the selector in the browser's inspector.") from None
                time.sleep(0.5)
            browser.find_element(By.ID, f"panel-{panel}").screenshot(png)
    finally:
        browser.quit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="a run folder the explorer opens (happy_gpt's or a frontier sweep's --out)")
    parser.add_argument("panel", choices=PANELS, help="the tab to picture")
    parser.add_argument("png", help="where to write the picture")
    parser.add_argument("--width", type=int, default=1400, help="the browser window's width in pixels")
    parser.add_argument("--click", default=None, help="CSS selector of an element to click first (e.g. a point)")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for the page and --click's element")
    args = parser.parse_args(argv)
    try:
        screenshot(args.out, args.panel, args.png, args.width, args.click, args.wait)
    except (RunFolderError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
