"""The built-in dashboard in a real browser: Debian's Chromium, driven by Selenium through
Debian's chromedriver (both from the distribution's packages, so their versions match).

    python3 tests/e2e/dashboard_browser.py --http http://127.0.0.1:8000 [--screenshot docs/dashboard.png]
    python3 tests/e2e/dashboard_browser.py --http ... --empty        # a session with no trades yet
    python3 tests/e2e/dashboard_browser.py --http ... --restart      # see below

Checks, at 1,366x768: the page loads with no console error, the board fills with 30 rows, values
change between two snapshots, charts are drawn; then, at a phone's width, the layout stacks and
nothing but the board's own scroller is wider than the screen. With --empty: the page shows that
the session has not started, with no console error. With --restart it then prints the line
`RESTART`, waits for a line on stdin (the caller restarts the server on the same port), and
checks that the page reconnected by itself. Prints one JSON line with what it saw; exits non-zero
with a message on any failure.
"""

import argparse
import json
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def fail(message):
    print(f"dashboard check failed: {message}", file=sys.stderr)
    sys.exit(1)


def wait_for(driver, script, what, timeout=30.0):
    """Polls a JavaScript expression until it is truthy; returns its value."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.1)
    fail(f"{what} (last value: {value!r})")


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--screenshot")
    ap.add_argument("--empty", action="store_true")
    ap.add_argument("--restart", action="store_true")
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or fail("chromium is not installed")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1366,768", "--hide-scrollbars"):
        options.add_argument(a)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or fail("chromedriver is not installed")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    seen = {}
    try:
        driver.set_window_size(1366, 768)
        driver.get(args.http + "/")
        wait_for(driver, "document.getElementById('conn-state').textContent === 'live'", "the page never went live")
        if args.empty:
            wait_for(driver, "document.getElementById('conn-seq').textContent.startsWith('seq')", "no snapshot arrived")
            time.sleep(1.0)
            seen["empty_notice"] = driver.execute_script("return !document.getElementById('board-empty').hidden")
            seen["rows"] = driver.execute_script("return document.querySelectorAll('#board tbody tr').length")
            if not seen["empty_notice"] or seen["rows"] != 0:
                fail(f"an empty session should show its notice and no rows: {seen}")
        else:
            seen["rows"] = wait_for(
                driver, "document.querySelectorAll('#board tbody tr').length >= 30 && document.querySelectorAll('#board tbody tr').length",
                "the board never filled with 30 rows")
            if seen["rows"] != 30:
                fail(f"the board has {seen['rows']} rows, not 30")
            first = driver.execute_script("return [document.getElementById('conn-seq').textContent, document.querySelector('#board tbody').innerText]")
            changed = wait_for(
                driver,
                f"(() => {{ const s = document.getElementById('conn-seq').textContent, b = document.querySelector('#board tbody').innerText;"
                f" return s !== {json.dumps(first[0])} && b !== {json.dumps(first[1])} && [s, b]; }})()",
                "no value changed between snapshots")
            seen["seq_before"], seen["seq_after"] = first[0], changed[0]
            # The page asked for deltas and applied them (the server offers them by default).
            seen["deltas"] = wait_for(driver, "Number(document.body.dataset.deltas || 0) > 0 && Number(document.body.dataset.deltas)",
                                      "the page took no delta message")
            seen["charts"] = wait_for(driver, "document.querySelectorAll('.chart canvas').length >= 2 && document.querySelectorAll('.chart canvas').length", "the charts were not drawn")
            seen["vn30"] = driver.execute_script("return document.querySelector('#idx-VN30 .value').textContent")
            # Sorting: a click on "Total" orders the board by total volume, largest first.
            driver.execute_script("document.querySelector('#board thead th[data-key=total]').click()")
            totals = driver.execute_script(
                "return [...document.querySelectorAll('#board tbody tr')].map(r => Number(r.children[7].textContent.replace(/,/g, '')))")
            if totals != sorted(totals, reverse=True):
                fail(f"sorting by total did not order the rows: {totals}")
            if args.screenshot:
                time.sleep(1.5)  # let a flash fade so the picture shows the board's colours
                driver.save_screenshot(args.screenshot)
            # A phone: everything stacks, and the page is no wider than the screen.
            driver.set_window_size(390, 844)
            time.sleep(0.5)
            seen["phone_columns"] = driver.execute_script(
                "return getComputedStyle(document.querySelector('.cards')).gridTemplateColumns.split(' ').length")
            overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            if seen["phone_columns"] != 1 or overflow > 0:
                fail(f"the phone layout does not stack or overflows by {overflow}px: {seen}")
            driver.set_window_size(1366, 768)
        errors = console_errors(driver)
        if errors:
            fail(f"console errors: {errors}")
        if args.restart:
            connects = driver.execute_script("return Number(document.body.dataset.connects)")
            print("RESTART", flush=True)
            sys.stdin.readline()
            wait_for(driver, f"Number(document.body.dataset.connects) > {connects} && document.getElementById('conn-state').textContent === 'live'",
                     "the page did not reconnect by itself", timeout=60)
            seq_now = driver.execute_script("return document.getElementById('conn-seq').textContent")
            wait_for(driver, f"document.getElementById('conn-seq').textContent !== {json.dumps(seq_now)}",
                     "no snapshot after reconnecting")
            seen["reconnected"] = True
        print(json.dumps(seen))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
