#!/usr/bin/env python3
"""The console in headless Chromium, against a running daemon (started by ConsoleBrowserTests.swift).

  console_browser_test.py --base URL --token T --bucket-origin ORIGIN --images N --failed-asset ID
                          --placeholders STATE,... --screenshots DIR

Drives the console as an operator would, by keyboard where it matters, and fails (exit 1, the reason on
stderr) on the first broken promise:
  - a wrong token is refused with a message, and is not kept; the right one signs in;
  - every gallery thumbnail loads from the bucket through its presigned URL under the page's CSP
    (naturalWidth > 0), with alt text; placeholders show the states they stand for;
  - the health strip shows the figures and both checks ready;
  - the prediction view shows the output's details and a fresh presigned URL that loads;
  - the failed asset's Retry button turns its row to pending (the caller checks the database);
  - no console error (but the 401 of the wrong-token step), no CSP violation, no uncaught exception,
    no request carrying the token in its URL, no cookie; the page fits 360 px without sideways scrolling;
  - full-page screenshots (light, dark, 360 px) are written to DIR.
Chromium that cannot start is a failure that says why, never a skip.
"""
import argparse
import base64
import json
import math
import os
import shutil
import sys
import tempfile
import time


def fail(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def step(message):
    print("- " + message, flush=True)


try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as error:
    fail(f"selenium is not installed in the project's .venv ({error}): run scripts/setup.sh")

# Installed in every new document before its own scripts: records what the page itself cannot report.
WATCHERS = """
window.__consoleTest = {csp: [], errors: []};
document.addEventListener('securitypolicyviolation', function (e) {
  window.__consoleTest.csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
window.addEventListener('error', function (e) { window.__consoleTest.errors.push(String(e.message)); });
window.addEventListener('unhandledrejection', function (e) { window.__consoleTest.errors.push('unhandled rejection: ' + String(e.reason)); });
"""


def start_browser(log_path, profile):
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        fail("Chromium cannot start: " + ("chromium" if not chromium else "chromedriver") +
             " is not installed (Debian packages chromium and chromium-driver; scripts/setup.sh installs them)")
    options = Options()
    options.binary_location = chromium
    for argument in ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-default-apps",
                     "--window-size=1280,1000", "--user-data-dir=" + profile, "--lang=en-GB"]:
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path, log_output=log_path), options=options)
    except WebDriverException as error:
        log = ""
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                log = handle.read()[-3000:]
        except OSError:
            pass
        fail(f"Chromium cannot start ({chromium}, {driver_path}): {error.msg or error}\nchromedriver log:\n{log}")
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCHERS})
    driver.execute_cdp_cmd("Network.enable", {})
    return driver


class Console:
    def __init__(self, driver, args):
        self.driver = driver
        self.args = args
        self.requests = []
        self.errors_allowed = 0

    def wait(self, what, condition, timeout=20):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: condition())
        except TimeoutException:
            fail(f"timed out after {timeout} s waiting for {what}")

    def js(self, script, *arguments):
        return self.driver.execute_script(script, *arguments)

    def visible(self, element_id):
        return self.js("const e = document.getElementById(arguments[0]); return !!e && !e.hidden && e.offsetParent !== null;", element_id)

    def text(self, selector):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;", selector)

    def drain_logs(self, allow_unauthorized=False):
        """Console messages and network events since the last call; fails on any error not allowed."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                request = message["params"]["request"]
                self.requests.append((request["url"], request.get("headers", {})))
        unexpected = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            if allow_unauthorized and "/v1/stats" in entry["message"] and "401" in entry["message"]:
                self.errors_allowed += 1
                continue
            unexpected.append(entry["message"])
        if unexpected:
            fail("console errors:\n  " + "\n  ".join(unexpected))
        watched = self.js("return window.__consoleTest || {csp: [], errors: []};")
        if watched["csp"]:
            fail("CSP violations: " + ", ".join(watched["csp"]))
        if watched["errors"]:
            fail("uncaught errors: " + ", ".join(watched["errors"]))

    def images_loaded(self, selector):
        """Scrolls each image into view (they are lazy) and waits until it has decoded pixels."""
        images = self.driver.find_elements(By.CSS_SELECTOR, selector)
        for image in images:
            self.js("arguments[0].scrollIntoView({block: 'center'});", image)
            self.wait(f"image {image.get_attribute('src')[:80]}… to load",
                      lambda: self.js("return arguments[0].complete && arguments[0].naturalWidth > 0;", image))
        self.js("window.scrollTo(0, 0);")
        return images

    def screenshot(self, name, width, dark=False):
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
        self.js("document.activeElement && document.activeElement.blur();")
        self.images_loaded("#grid img")
        overflow = self.js("return document.documentElement.scrollWidth - window.innerWidth;")
        if overflow > 0:
            fail(f"at {width} px the page is {overflow} px wider than the window")
        height = math.ceil(self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"])
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        self.images_loaded("#grid img")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path = os.path.join(self.args.screenshots, name)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        step(f"screenshot {path} ({width} x {height}{', dark' if dark else ''})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--bucket-origin", required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--audio", type=int, default=0)
    parser.add_argument("--failed-asset", required=True)
    parser.add_argument("--placeholders", required=True, help="comma-separated states the gallery must show as placeholders")
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="afterimage-chromium-")
    driver = start_browser(os.path.join(profile, "chromedriver.log"), profile)
    try:
        run(Console(driver, args))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run(c):
    args, driver = c.args, c.driver
    wrong = "wrong-" + args.token[::-1]

    step("open /ui/: the sign-in form has the focus")
    driver.get(args.base + "/ui/")
    c.wait("the sign-in form", lambda: c.visible("view-signin"))
    c.wait("the token field to have the focus", lambda: c.js("return document.activeElement.id;") == "token")

    step("a wrong token is refused, said so, and not kept")
    driver.switch_to.active_element.send_keys(wrong + Keys.ENTER)
    c.wait("the refusal message", lambda: c.visible("signin-error"))
    message = c.text("#signin-error")
    if "not valid" not in message:
        fail(f"unexpected refusal message: {message!r}")
    if c.js("return sessionStorage.getItem('afterimage.token');") is not None:
        fail("a refused token was kept in sessionStorage")
    if c.visible("view-gallery") or c.visible("health"):
        fail("the console opened with a wrong token")
    c.drain_logs(allow_unauthorized=True)
    if c.errors_allowed != 1:
        fail(f"expected the wrong token's one 401 in the console log, saw {c.errors_allowed}")

    step("the right token signs in; the gallery shows every archived output from the bucket")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(args.token + Keys.ENTER)
    c.wait("the gallery", lambda: c.visible("view-gallery"))
    if c.js("return sessionStorage.getItem('afterimage.token');") != args.token:
        fail("the token is not in sessionStorage after signing in")
    c.wait(f"{args.images} thumbnails", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#grid img")) >= args.images)
    images = c.images_loaded("#grid img")
    if len(images) != args.images:
        fail(f"{len(images)} thumbnails, expected {args.images}")
    for image in images:
        src, alt = image.get_attribute("src"), image.get_attribute("alt")
        if not src.startswith(args.bucket_origin + "/") or "X-Amz-Signature=" not in src:
            fail(f"thumbnail not from the bucket's presigned URL: {src[:120]}")
        if not alt or "output" not in alt:
            fail(f"thumbnail without alt text: {src[:80]}")
        if image.get_attribute("loading") != "lazy":
            fail("thumbnail not lazy-loaded")
    audio = driver.find_elements(By.CSS_SELECTOR, "#grid audio")
    if len(audio) != args.audio or any(not a.get_attribute("src").startswith(args.bucket_origin + "/") for a in audio):
        fail(f"{len(audio)} audio players from the bucket, expected {args.audio}")
    placeholders = c.js("return Array.from(document.querySelectorAll('#grid .placeholder')).map(p => p.getAttribute('aria-label') || p.textContent);")
    for state in args.placeholders.split(","):
        if not any(": " + state in label for label in placeholders):
            fail(f"no placeholder labelled {state!r} in the gallery: {placeholders}")
    failed_label = next(label for label in placeholders if ": failed" in label)
    if "," not in failed_label:
        fail(f"the failed placeholder gives no reason: {failed_label!r}")

    step("the health strip shows the queue and both checks ready")
    c.wait("the health strip", lambda: c.text('[data-check="database"]') == "ready" and c.text('[data-check="storage"]') == "ready")
    if c.text('[data-stat="failed"]') != "1" or c.text('[data-stat="pending"]') != "1" or c.text('[data-stat="in_flight"]') != "1":
        fail("health strip figures: " + c.js("return document.getElementById('health').textContent.replace(/\\s+/g, ' ');"))
    c.drain_logs()

    step("the provider filter narrows the gallery, and back")
    Select(driver.find_element(By.ID, "filter-provider")).select_by_visible_text("stability")
    c.wait("an empty gallery for stability", lambda: c.visible("gallery-empty"))
    Select(driver.find_element(By.ID, "filter-provider")).select_by_visible_text("all")
    c.wait("the gallery again", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#grid img")) == args.images)

    step("light, dark and 360 px full-page screenshots; nothing wider than the window")
    c.screenshot("console.png", 1280)
    c.screenshot("console-dark.png", 1280, dark=True)
    c.screenshot("console-360.png", 360)
    c.drain_logs()

    step("the prediction view: details, input and a fresh presigned URL")
    first = driver.find_element(By.CSS_SELECTOR, "#grid figure img").find_element(By.XPATH, "ancestor::figure").find_element(By.CSS_SELECTOR, "figcaption a")
    first.send_keys(Keys.ENTER)
    c.wait("the prediction view", lambda: c.visible("view-prediction") and driver.find_elements(By.CSS_SELECTOR, "#prediction-outputs article"))
    if '"prompt"' not in c.text("#prediction-input"):
        fail("the prediction's input is not shown")
    details = c.text("#prediction-outputs")
    if "image/png" not in details or "stored" not in details:
        fail(f"output details missing: {details[:200]}")
    c.images_loaded("#prediction-outputs img")
    driver.find_element(By.XPATH, "//article//button[normalize-space()='Copy URL']").click()
    c.wait("the copied URL", lambda: c.js("const f = document.querySelector('input.copied'); return f ? f.value : '';").startswith(args.bucket_origin + "/"))
    copied = c.js("return document.querySelector('input.copied').value;")
    loaded = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const probe = new Image();
        probe.onload = () => done(probe.naturalWidth);
        probe.onerror = () => done(-1);
        probe.src = arguments[0];
    """, copied)
    if loaded <= 0:
        fail("the copied presigned URL does not load")
    if c.js("return document.querySelector('.output dl').textContent;").count("–") > 6:
        fail("the output details are mostly empty")
    c.drain_logs()

    step("a reload keeps the session (sessionStorage); keyboard: Tab to Failures, Enter")
    driver.get(args.base + "/ui/#/gallery")
    c.wait("the gallery after a reload, still signed in", lambda: c.visible("view-gallery") and c.visible("health"))
    for _ in range(40):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if c.js("return document.activeElement.textContent.trim();") == "Failures":
            break
    else:
        fail("Tab never reached the Failures link")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    c.wait("the failures view", lambda: c.visible("view-failures"))
    step("Retry the failed asset; its row turns pending")
    row_selector = f'#failed-table tr[data-asset="{args.failed_asset}"]'
    c.wait("the failed asset's row", lambda: driver.find_elements(By.CSS_SELECTOR, row_selector))
    if c.text(row_selector + " td.reason") in ("", "–"):
        fail(f"the failure reason is missing: {c.text(row_selector)}")
    if not driver.find_elements(By.CSS_SELECTOR, '#expired-table tr[data-asset]'):
        fail("the expired asset is not listed")
    retry = driver.find_element(By.CSS_SELECTOR, row_selector + " button")
    retry.send_keys(Keys.ENTER)
    c.wait("the row to show pending", lambda: c.text(row_selector + " td.state") == "pending")
    if retry.get_attribute("disabled") is None:
        fail("the Retry button is still active after the retry was taken")
    c.drain_logs()

    step("the token never left the Authorization header")
    if c.js("return document.cookie;") != "":
        fail("the console set a cookie")
    if c.js("return localStorage.length;") != 0:
        fail("the console wrote to localStorage")
    api_requests = 0
    for url, headers in c.requests:
        if args.token in url or wrong in url:
            fail(f"a request carries the token in its URL: {url[:100]}")
        if any(name.lower() == "cookie" for name in headers):
            fail(f"a request carries a cookie: {url[:100]}")
        if "/v1/" in url and url.startswith(args.base):
            api_requests += 1
            authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            if authorization not in ("Bearer " + args.token, "Bearer " + wrong):
                fail(f"an API request without the bearer token: {url}")
        elif url.startswith(args.bucket_origin) and any(k.lower() == "authorization" for k in headers):
            fail(f"the token was sent to the bucket: {url[:100]}")
    if api_requests < 5:
        fail(f"only {api_requests} API requests were seen; the network log is not working")
    step(f"{len(c.requests)} requests checked, {api_requests} to the API")
    print("console browser test passed", flush=True)


if __name__ == "__main__":
    main()
