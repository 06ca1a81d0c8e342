"""`fantasyid app` in a real browser: headless Chromium loads the page (tiny model), uploads a face photo, presses
Generate and gets a playable video; a photo without a face shows the CLI's one-line error and the app keeps serving."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import PIL.Image
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def served(tmp_path_factory, face_root):
    """The app on the tiny model, on a free 127.0.0.1 port; always closed at the end."""
    import socket

    from fantasyid.app import AppBackend, AppConfig
    from fantasyid.app.ui import launch_app

    out = tmp_path_factory.mktemp("app_out")
    backend = AppBackend(AppConfig(model="tiny", out=out, device="cpu", face_root=face_root))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = launch_app(backend, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", backend, out
    finally:
        demo.close()


def _wait(condition, timeout: float = 120.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s")


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    elements = driver.find_elements(By.ID, element_id)
    return elements[0].text if elements else ""


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))[0]
    field.send_keys(str(path))


def test_generate_in_browser(served, chrome, screenshot, tmp_path):
    from selenium.webdriver.common.by import By

    url, backend, out = served
    assert url.startswith("http://127.0.0.1:")
    chrome.get(url)
    _wait(lambda: chrome.find_elements(By.ID, "generate"))

    # a photo without a face: the CLI's error line in the page
    sky = tmp_path / "sky.png"
    PIL.Image.new("RGB", (160, 120), (90, 140, 200)).save(sky)
    _upload(chrome, sky)
    message = _wait(lambda: "error:" in _text(chrome, "face-status") and _text(chrome, "face-status"))
    assert "no face found in 'sky.png'" in message and "hint: use a photo with one clearly visible" in message

    # the astronaut: one face, boxed; Generate makes the video
    chrome.find_element(By.CSS_SELECTOR, "#photo button[aria-label='Clear']").click()
    _upload(chrome, EXAMPLE)
    _wait(lambda: "1 face found" in _text(chrome, "face-status"))
    # a shape slider: clicking right of its middle widens the face; the FLAME preview and the trait table update
    from selenium.webdriver.common.action_chains import ActionChains

    next(b for b in chrome.find_elements(By.TAG_NAME, "button") if "Face shape" in b.text).click()
    track = _wait(lambda: chrome.find_elements(By.CSS_SELECTOR, "#trait-face_width input[type=range]"))[0]
    ActionChains(chrome).move_to_element_with_offset(track, track.size["width"] // 8, 0).click().perform()
    summary = _wait(lambda: "moved by" in _text(chrome, "shape-status") and _text(chrome, "shape-status"))
    before, after = (float(v) for v in summary.split("face_width: ")[1].split(" mm")[0].split(" → "))
    assert after > before
    assert _wait(lambda: chrome.execute_script("const i = document.querySelector('#preview img'); return i && i.src"))
    chrome.find_element(By.ID, "generate").click()
    source = _wait(lambda: chrome.execute_script(
        "const v = document.querySelector('#video video'); return v && v.currentSrc;"), timeout=300)  # fmt: skip
    # the browser can play it: metadata decoded, a duration, no media error
    state = _wait(lambda: chrome.execute_script(
        "const v = document.querySelector('#video video');"
        "return v.readyState >= 1 && v.duration > 0 ? [v.readyState, v.duration, v.error] : null;"),
        timeout=60)  # fmt: skip
    assert state[2] is None and state[1] > 0
    assert "made app_" in _text(chrome, "status")
    # the Evaluate tab: RS / IFS / FM of that video against its reference, as fantasyid eval
    next(b for b in chrome.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Evaluate").click()
    chrome.find_element(By.ID, "evaluate").click()
    table = _wait(lambda: "frames evaluated" in _text(chrome, "metrics") and _text(chrome, "metrics"))
    assert "RS" in table and "IFS" in table and "FM" in table and "9 frames evaluated" in table
    next(b for b in chrome.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Generate").click()

    chrome.set_window_size(1280, 1900)  # the whole page for the README picture
    chrome.execute_script("window.scrollTo(0, 0)")
    screenshot(chrome, "app.png")

    # the served source is the very mp4 written to the output folder, beside its sidecar (as fantasyid generate)
    with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 - our own local server
        served_bytes = response.read()
    videos = sorted(out.glob("app_*.mp4"))
    assert len(videos) == 1 and videos[0].read_bytes() == served_bytes
    sidecar = json.loads(videos[0].with_suffix(".json").read_text())
    assert sidecar["status"] == "done" and sidecar["model"]["model"] == "tiny"
    assert sidecar["settings"]["steps"] == 4 and Path(sidecar["ref"]).parent == out / "refs"
    assert sidecar["prompt"] == "a person smiles at the camera"
    shape = Path(sidecar["model"]["shape_file"])  # generated with the edited face
    assert shape.parent == out / "shapes" and shape.name.startswith(Path(sidecar["ref"]).stem + "_face_width+")


def test_one_generation_at_a_time(served):
    """Two generations submitted together: the second waits in the queue (its position is reported) until the
    first is done."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    url, _, out = served
    client = Client(url, verbose=False)
    photo = handle_file(str(EXAMPLE))
    # the first runs long enough (60 steps) for the second to be sent and to join the queue while it runs
    first = client.submit(photo, "a person nods", 1, 60, 6.0, *([0.0] * 7), api_name="/on_generate")
    _wait(lambda: first.status().code == Status.PROCESSING or first.done(), timeout=120, every=0.05)
    second = client.submit(photo, "a person nods", 2, 1, 6.0, *([0.0] * 7), api_name="/on_generate")
    seen_waiting = False
    deadline = time.monotonic() + 300
    while not second.done() and time.monotonic() < deadline:
        status = second.status()
        if status.code == Status.IN_QUEUE and status.rank is not None and not first.done():
            seen_waiting = True
        time.sleep(0.05)
    assert seen_waiting, "the second generation never waited in the queue"
    statuses = [result[2] for result in (first.result(), second.result())]
    assert all(status.startswith("made app_") for status in statuses), statuses
    assert len(list(out.glob("app_*_s1.mp4"))) == 1 and len(list(out.glob("app_*_s2.mp4"))) == 1
