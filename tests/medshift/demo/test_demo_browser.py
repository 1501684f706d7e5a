"""The demo page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by
selenium uploads a phantom image, presses Translate and checks the before/after slider.

Skipped, with the reason in pytest's summary, where Chromium or its driver is not installed (`.ci/run` installs
them). Set MEDSHIFT_DEMO_SCREENSHOT to a path to keep the screenshot (the README's is made that way).
"""

from __future__ import annotations

import io
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from medshift.demo_app import IMAGE_SIZE, TAU_SWEEP, phantom_examples

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
By = pytest.importorskip("selenium.webdriver.common.by").By

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="browser test skipped: Chromium or chromedriver not found (apt-get install chromium chromium-driver)",
)

TIMEOUT = 120  # seconds: page load, upload and a 4-step translation on a busy CPU


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1150"):
        options.add_argument(argument)  # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def _fetch(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(PIL.Image.open(io.BytesIO(response.read())).convert("L"), dtype=np.int16)


def _slider_images(driver) -> list:
    shown = "return arguments[0].complete && arguments[0].naturalWidth"
    found = driver.find_elements(By.CSS_SELECTOR, "#before-after img")
    return found if len(found) == 2 and all(driver.execute_script(shown, image) for image in found) else []


def test_upload_translate_and_see_the_slider(browser, demo_url, examples_dir, tmp_path):
    """Translate and τ sweep pressed together both finish (one job at a time, none broken); a new upload clears the
    results; an error's text stays on the page."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    example = phantom_examples(examples_dir)[0]
    browser.get(demo_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(example))
    wait.until(lambda d: example.stem in d.find_element(By.ID, "upload").text)  # the upload has arrived

    browser.find_element(By.ID, "translate-button").click()
    browser.find_element(By.ID, "sweep-button").click()
    images = wait.until(_slider_images)
    assert [browser.execute_script("return arguments[0].naturalWidth", image) for image in images] == [IMAGE_SIZE] * 2
    before, after = (_fetch(image.get_attribute("src")) for image in images)
    assert np.abs(before - after).mean() > 1.0  # the slider shows a translation, not the input twice
    assert "real_normal" in browser.find_element(By.ID, "download").text  # the 16-bit PNG is offered
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tau-sweep img")) >= len(TAU_SWEEP))  # the sweep too
    assert not browser.find_element(By.ID, "status").text.strip()

    screenshot = Path(os.environ.get("MEDSHIFT_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshot))
    assert PIL.Image.open(screenshot).size[0] > 0

    # a new upload: the previous result and its download go; its error stays readable under the buttons
    broken = tmp_path / "truncated.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    browser.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(broken))
    wait.until(lambda d: broken.stem in d.find_element(By.ID, "upload").text)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#before-after img") and "real_normal" not in d.find_element(By.ID, "download").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#tau-sweep img")
    browser.find_element(By.ID, "translate-button").click()
    wait.until(lambda d: "truncated.png: image cannot be decoded" in d.find_element(By.ID, "status").text)
