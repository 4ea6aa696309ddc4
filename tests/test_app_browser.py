"""The web demo in a real browser: `app/app.py --model tiny-random` driven through Debian's headless Chromium.

Needs `chromium` and `chromium-driver` (Debian packages; `.ci/run` installs them) and the `app` extra.
Chromium runs with the flags that keep it off the network, and the app listens on localhost only.
Set `INSTRUCTAUDIO_APP_SCREENSHOT=docs/app_screenshot.png` to also write the README's screenshot.
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Cold start on a busy 2-core machine: torch, the processor and Gradio take tens of seconds to import.
SERVER_START_TIMEOUT_S = 240
GENERATION_TIMEOUT_S = 180
#: The toy pipeline's audio: 8 kHz, one latent frame every 4 ms, so 1.2 s is exactly 300 frames.
REQUESTED_SECONDS = 1.2
TINY_SAMPLING_RATE = 8000

for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not os.access(path, os.X_OK):
        pytest.skip(
            f"{path} not found: apt-get install {package} to run the browser tests", allow_module_level=True
        )
pytest.importorskip("selenium", reason='selenium is missing: pip install -e ".[dev]"')
pytest.importorskip("gradio", reason='Gradio is missing: pip install -e ".[app]"')

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """Start the app on a free localhost port and yield its URL; its log is shown if it fails to start."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(REPO / "app" / "app.py"), "--model", "tiny-random", "--port", str(port)]
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command + ["--max_seconds", "2"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"the app exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the app did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                    f"{log_path.read_text()[-3000:]}"
                )
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def open_app(driver, url: str) -> None:
    """Load the page fresh (no toast or output left from another test) and wait until it is interactive."""
    driver.get(url)
    WebDriverWait(driver, 60).until(expected_conditions.element_to_be_clickable((By.ID, "generate-button")))


def replace_text(element, text: str) -> None:
    # Select-all + typing fires the input events Gradio listens to; WebDriver's clear() does not.
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    if text:
        element.send_keys(text)


def fill_form(driver, task: str, instruction: str, text: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#task [data-testid="{task}-radio-label"]').click()
    replace_text(driver.find_element(By.CSS_SELECTOR, "#instruction textarea"), instruction)
    replace_text(driver.find_element(By.CSS_SELECTOR, "#text textarea"), text)


def set_number(driver, selector: str, value: float) -> None:
    field = driver.find_element(By.CSS_SELECTOR, selector)
    replace_text(field, str(value))
    field.send_keys(Keys.TAB)  # commit the value, as a user leaving the field does


def value_of(driver, elem_id: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input").get_attribute(
        "value"
    )


def save_full_page(driver, path: Path) -> None:
    """Screenshot the whole page: headless Chromium captures only the viewport, so grow it to the page."""
    for _ in range(3):  # the layout may reflow once the window is taller
        page_height, chrome_height = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        if driver.execute_script("return window.innerHeight") >= page_height:
            break
        driver.set_window_size(1280, min(page_height + chrome_height, 3000))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)  # let the layout settle after the resize
    driver.save_screenshot(str(path))


def test_generate_in_the_browser_gives_audio_of_the_requested_length(app_url, browser, tmp_path):
    open_app(browser, app_url)
    assert "Random weights" in browser.find_element(By.ID, "random-weights-banner").text
    fill_form(browser, "Speech", "A calm man speaks slowly.", "Hello world, 你好!")
    # Language detection runs as the text changes, before any generation.
    WebDriverWait(browser, 20).until(lambda d: value_of(d, "language") == "Mixed: English + Chinese")

    browser.find_element(By.XPATH, "//button[contains(., 'Advanced settings')]").click()
    # The accordion renders its content after the click; wait for it rather than racing it.
    WebDriverWait(browser, 20).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "#automatic input"))
    ).click()
    browser.find_element(By.CSS_SELECTOR, "#randomize-seed input").click()
    set_number(browser, "#duration input[type=number]", REQUESTED_SECONDS)
    set_number(browser, "#steps input[type=number]", 2)
    set_number(browser, "#seed input", 7)
    browser.find_element(By.ID, "generate-button").click()

    # Gradio's player: an <audio> element plus a download link to the WAV the server wrote.
    link = WebDriverWait(browser, GENERATION_TIMEOUT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#output-audio a[data-testid="download-link"]')
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#output-audio audio")
    audio_url = urllib.parse.urljoin(app_url, link.get_attribute("href"))
    assert urllib.parse.urlsplit(audio_url).hostname == "127.0.0.1"
    with urllib.request.urlopen(audio_url, timeout=30) as response:
        audio, sampling_rate = sf.read(io.BytesIO(response.read()))
    assert sampling_rate == TINY_SAMPLING_RATE
    assert len(audio) == round(REQUESTED_SECONDS * TINY_SAMPLING_RATE)

    # The browser decoded it too: the player shows its length (m:ss).
    assert browser.find_element(By.CSS_SELECTOR, "#output-audio time#duration").text == "0:01"
    assert browser.find_element(By.CSS_SELECTOR, "#mel-image img").get_attribute("src")
    phonemes = value_of(browser, "phonemes").split()
    assert phonemes[:2] == ["<en>", "HH"] and "<zh>" in phonemes
    assert value_of(browser, "generation-info").startswith(f"{REQUESTED_SECONDS:.2f} s of audio (requested)")
    assert value_of(browser, "seed") == "7"

    save_full_page(browser, tmp_path / "app.png")
    target = os.environ.get("INSTRUCTAUDIO_APP_SCREENSHOT")
    if target:
        shutil.copyfile(tmp_path / "app.png", target)


@pytest.mark.parametrize(
    "task, instruction, text, message",
    [
        ("Speech", "A calm man speaks.", "", "Speech needs a text to speak"),
        ("Speech", "", "Hello.", "The instruction is empty"),
        ("Speech", "A calm man speaks.", "[S9] Hello.", "Unknown speaker tag '[S9]' at character 0"),
        ("Dialogue", "Two friends chat.", "Hello there.", "A dialogue needs speaker tags"),
    ],
)
def test_bad_input_shows_a_readable_error(app_url, browser, task, instruction, text, message):
    open_app(browser, app_url)
    fill_form(browser, task, instruction, text)
    browser.find_element(By.ID, "generate-button").click()
    # Gradio shows the error as a toast that slides in: wait until it is visible, not merely present.
    toast = WebDriverWait(browser, 60).until(
        expected_conditions.visibility_of_element_located(
            (By.XPATH, f"//*[@data-testid='toast-text'][contains(., {message!r})]")
        )
    )
    assert "error" in toast.get_attribute("class").split()
    assert "Traceback" not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, '#output-audio a[data-testid="download-link"]')


def test_clicking_an_example_fills_the_form(app_url, browser):
    open_app(browser, app_url)
    browser.find_element(
        By.XPATH, "//body//*[contains(text(), 'Speaker 0 is a cheerful young woman')]"
    ).click()
    WebDriverWait(browser, 20).until(lambda d: value_of(d, "text").startswith("[S0] 你好呀"))
    assert browser.find_element(By.CSS_SELECTOR, '#task input[value="Dialogue"]').is_selected()
    # The text box follows the task, and the language display follows the text.
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#text [data-testid="block-info"]').text == "Dialogue"
    )
    WebDriverWait(browser, 20).until(lambda d: value_of(d, "language") == "Mixed: Chinese + English")
