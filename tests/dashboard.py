#!/usr/bin/env python3
"""Drives the dashboard (GET /ui) in headless Chromium with Selenium, as a person would.

Run by tests/dashboard.rs as `python3 tests/dashboard.py BASE_URL SCREENSHOT.png` against a
running mock cluster. Checks: the page loads and goes live without console errors; a task
submitted over HTTP appears within 2 s; a task run from the form appears; its Stop button stops
it; a manager without services shows "no services". Exits non-zero with a message on failure.
"""
import json
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

base, shot = sys.argv[1], sys.argv[2]


# The page redraws a table on every event, so an element found a moment ago may be gone.
STALE = [StaleElementReferenceException]


def waiter(seconds):
    return WebDriverWait(driver, seconds, poll_frequency=0.02, ignored_exceptions=STALE)


def click(selector):
    for _ in range(50):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.02)
    raise AssertionError(f"{selector} kept being redrawn")


def http(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(base + "/ui")
    wait = waiter(10)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert driver.title == "Poseidon dashboard", driver.title
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 3)
    assert driver.find_element(By.ID, "no-services").text == "no services"

    # A task submitted over HTTP (not through the page) appears within 2 s, via /events.
    task = http("POST", "/tasks", {"name": "from-curl", "image": "busybox:latest", "cmd": ["sleep", "3600"]})
    start = time.monotonic()
    row = f'#tasks tr[data-id="{task["id"]}"]'
    waiter(2).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, row))
    print(f"the submitted task appeared after {time.monotonic() - start:.3f} s")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") == "running")

    # A task run from the form.
    driver.find_element(By.ID, "run-name").send_keys("from-form")
    driver.find_element(By.ID, "run-image").send_keys("busybox:latest")
    driver.find_element(By.ID, "run-cmd").send_keys("sleep 3600")
    click("#run-submit")
    wait.until(lambda d: any(r.find_element(By.CSS_SELECTOR, "td.name").text == "from-form"
                             and r.get_attribute("data-state") == "running"
                             for r in d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")))
    driver.save_screenshot(shot)
    print(f"screenshot: {shot}")

    # The Stop button stops the task: the manager says so, and the page shows it.
    click(f"{row} button.stop")
    try:
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-state") == "completed")
    except Exception:
        print("the manager's view:", http("GET", f"/tasks/{task['id']}"))
        print("the page's row:", driver.find_element(By.CSS_SELECTOR, row).get_attribute("outerHTML"))
        print("message:", driver.find_element(By.ID, "message").text, driver.get_log("browser"))
        raise
    stopped = http("GET", f"/tasks/{task['id']}")
    assert stopped["desired"] == "stop" and stopped["state"] == "completed", stopped
    assert not driver.find_element(By.CSS_SELECTOR, f'{row} button.stop').is_enabled()
    assert driver.find_element(By.ID, "message").text == "", driver.find_element(By.ID, "message").text

    # No console errors. The one expected failure is the 404 of GET /services on a manager that
    # has no services (the page then says "no services"), which Chromium logs as a failed load.
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not ("/services" in e["message"] and "404" in e["message"])]
    assert not errors, f"console errors: {errors}"
    print("dashboard: all checks passed")
finally:
    driver.quit()
