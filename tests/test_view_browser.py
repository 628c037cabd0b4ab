"""``streamsave view`` in a real headless Chromium (Selenium): a recorded file's tree,
a 2D channel's heatmap with its axes, frames arriving from a writer in another process
without a reload, export from the page, a PyMoDAQ file and a file streamsave did not write.

``STREAMSAVE_VIEW_SCREENSHOT=docs/images/view.png`` also saves the recorded file's
screenshot there (the one the README shows)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import h5py
import numpy as np
import pytest

import streamsave
from tests._view import TIMEOUT, ViewServer, browser, wait_for
from tests.test_reader_pymodaq import continuous, pymodaq

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = ("browser", "continuous", "pymodaq")  # fixtures, used by name

IMAGE_GROUP: Final = "/RawData/Detector000/Data2D/CH00"


def tree_item(path: str) -> str:
    return f'[role=treeitem][data-path="{path}"]'


def open_path(driver: WebDriver, path: str) -> None:
    """Expand each group on the way to ``path`` in H5Web's tree, then select it."""
    from selenium.webdriver.common.by import By

    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        here = "/" + "/".join(parts[:depth])
        item = wait_for(driver, lambda d, h=here: d.find_element(By.CSS_SELECTOR, tree_item(h)), f"tree item {here}")
        if depth == len(parts) or item.get_attribute("aria-expanded") != "true":
            item.click()
        if depth < len(parts):
            wait_for(driver, lambda d, h=here: d.find_element(By.CSS_SELECTOR, tree_item(h))
                     .get_attribute("aria-expanded") == "true", f"{here} expanded")
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, tree_item(path)).get_attribute("aria-selected")
             == "true", f"{path} selected")


def axis_labels(driver: WebDriver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "text.visx-axis-label")]


def plotted_pixels(driver: WebDriver) -> np.ndarray[Any, Any]:
    """The plot's canvas as an RGB array, cut from a screenshot of the page."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.CSS_SELECTOR, ".ss-h5web canvas")
    rect, scale = canvas.rect, float(driver.execute_script("return window.devicePixelRatio"))
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    box = tuple(round(v * scale) for v in (rect["x"], rect["y"], rect["x"] + rect["width"],
                                                 rect["y"] + rect["height"]))
    return np.asarray(shot.crop(box))


def assert_plot_drawn(driver: WebDriver, what: str) -> np.ndarray[Any, Any]:
    """Wait until the canvas holds a picture: many colours, not one flat fill."""
    def drawn(d: WebDriver) -> tuple[np.ndarray[Any, Any]] | None:
        try:
            pixels = plotted_pixels(d)
        except Exception:  # no canvas yet, or it was replaced while we looked
            return None
        colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
        return (pixels,) if pixels.size and pixels.std() > 10 and colours > 20 else None

    found: tuple[np.ndarray[Any, Any]] = wait_for(driver, drawn, f"a non-blank plot of {what}")
    return found[0]


def panel_frames(driver: WebDriver, channel: str) -> str:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, f'.ss-frames[data-channel="{channel}"]')
    return cells[0].text if cells else ""


def save_screenshot(driver: WebDriver, tmp_path: Path) -> None:
    shot = tmp_path / "view.png"
    driver.save_screenshot(str(shot))
    wanted = os.environ.get("STREAMSAVE_VIEW_SCREENSHOT")
    if wanted:
        shutil.copyfile(shot, wanted)


# ------------------------------------------------------------------------------ a recorded file
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.h5"
    result = subprocess.run([sys.executable, "-m", "streamsave", "demo", "-o", str(path), "--duration", "1",
                             "--rate", "20", "--compression", "blosc2-lz4"],
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    return path


def test_a_recorded_file(browser: WebDriver, demo: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with ViewServer(demo) as srv:
        browser.get(srv.url)
        wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, tree_item("/RawData")), "the file's tree")
        assert wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=state]").text == "closed",
                        "the file's state")
        open_path(browser, IMAGE_GROUP)
        wait_for(browser, lambda d: sorted(axis_labels(d)) == ["x", "y"], "the heatmap's axis labels")
        title = browser.find_element(By.CSS_SELECTOR, ".ss-h5web p[class*=_title_]").text
        assert title == "image"
        pixels = assert_plot_drawn(browser, "the camera image")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "NX Heatmap" in body
        # the side panel: frame counts and the detectors' settings as a tree
        assert panel_frames(browser, "Camera/image") == "20"
        assert panel_frames(browser, "Spectrometer/spectrum") == "100"
        settings = browser.find_element(By.CSS_SELECTOR, "[data-testid=side-panel]").text
        assert "exposure_ms: 0.5" in settings and "sensor: Pt100" in settings
        save_screenshot(browser, tmp_path)
        # a spectrum: a line plot with its wavelength axis
        open_path(browser, "/RawData/Detector001/Data1D/CH00")
        wait_for(browser, lambda d: "wavelength" in " ".join(axis_labels(d)), "the spectrum's wavelength axis")
        assert srv.stop()[0] == 130


def test_export_from_the_page(browser: WebDriver, demo: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    downloads: Path = browser.download_dir  # type: ignore[attr-defined]
    for old in downloads.iterdir():
        old.unlink()
    with ViewServer(demo) as srv:
        browser.get(srv.url)
        panel = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".ss-export"), "the export form")
        Select(panel.find_element(By.NAME, "channel")).select_by_visible_text("Camera/image")
        panel.find_element(By.NAME, "frames").send_keys("2:5")
        Select(panel.find_element(By.NAME, "format")).select_by_value("npy")
        panel.find_element(By.CSS_SELECTOR, "[data-testid=export-link]").click()
        done = wait_for(browser, lambda d: [p for p in downloads.iterdir() if p.suffix == ".npy"], "the download")
        assert done[0].name == "demo-Camera_image-frames-2-5.npy"
        got = np.load(done[0], allow_pickle=False)
        done[0].unlink()
        with streamsave.open_reader(demo) as run:
            np.testing.assert_array_equal(got, run.channels["Camera/image"][2:5])
        # H5Web's own export menu: the frame on screen (frame 0), through the server's export
        open_path(browser, IMAGE_GROUP)
        assert_plot_drawn(browser, "the camera image")
        browser.find_element(By.CSS_SELECTOR, "button[aria-label='More controls']").click()
        wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[role=dialog] button[aria-haspopup=menu]"),
                 "the export menu").click()
        wait_for(browser, lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "[role=menu] button")
                                     if b.text == "Export to NPY"], "Export to NPY")[0].click()
        done = wait_for(browser, lambda d: [p for p in downloads.iterdir() if p.suffix == ".npy"], "the download")
        got = np.load(done[0], allow_pickle=False)
        with streamsave.open_reader(demo) as run:
            np.testing.assert_array_equal(got, run.channels["Camera/image"][0:1])


# ------------------------------------------------------------------------------ a live file
def test_frames_arrive_without_a_reload(browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "live.h5"
    writer = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_follow_writer.py"), str(path), "step"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def say(command: str) -> dict[str, Any]:
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write(command + "\n")
        writer.stdin.flush()
        reply: dict[str, Any] = json.loads(writer.stdout.readline())
        return reply

    def shape_shown(d: WebDriver) -> str:
        return str(d.execute_script(
            "const n = [...document.querySelectorAll('.ss-h5web abbr, .ss-h5web span, .ss-h5web td')]"
            ".find(e => e.textContent.trim() === 'n'); "
            "return n && n.parentElement ? n.parentElement.textContent : ''"))

    try:
        say("push 16")
        assert say("flush") == {"durable": 16}
        with ViewServer(path) as srv:
            browser.get(srv.url)
            wait_for(browser, lambda d: panel_frames(d, "Sensor/trace") == "16", "16 frames in the panel")
            wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=state]").text == "recording",
                     "the recording state")
            browser.execute_script("window.__sameDocument = 42;")
            open_path(browser, "/RawData/Detector000/Data1D/CH00")
            assert_plot_drawn(browser, "the live trace")
            wait_for(browser, lambda d: "16" in shape_shown(d), "the line view's 16 frames")
            seen = [16]
            for pushed in (32, 1):
                say(f"push {pushed}")
                durable = int(say("flush")["durable"])
                seen.append(durable)
                wait_for(browser, lambda d, n=durable: panel_frames(d, "Sensor/trace") == str(n),
                         f"{durable} frames in the panel")
                wait_for(browser, lambda d, n=durable: str(n) in shape_shown(d), f"the line view's {durable} frames")
            assert seen == [16, 48, 49]
            assert browser.execute_script("return window.__sameDocument") == 42  # never reloaded
            say("close")
            wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=state]").text == "closed",
                     "the closed state once the writer closed the file")
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate(timeout=TIMEOUT)


# ------------------------------------------------------------------------------ other writers' files
def test_a_pymodaq_file(browser: WebDriver, continuous: Path) -> None:
    from selenium.webdriver.common.by import By

    with streamsave.open_reader(continuous) as run:
        spectrum = next(c for c in run.channels.values() if c.frame_shape == (16,))
        data = spectrum.dataset_path  # PyMoDAQ's channel groups are not NXdata: open the dataset
    with ViewServer(continuous) as srv:
        browser.get(srv.url)
        wait_for(browser, lambda d: "Exposure (ms): 12.5" in d.find_element(By.CSS_SELECTOR, ".ss-panel").text,
                 "PyMoDAQ's XML settings as a tree")
        panel = browser.find_element(By.CSS_SELECTOR, ".ss-panel").text
        assert "Averaging: 3" in panel and "Mode: Continuous" in panel
        open_path(browser, data)
        assert_plot_drawn(browser, "a PyMoDAQ spectrum")


def test_any_hdf5_file(browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "scan.h5"
    y, x = np.mgrid[0:40, 0:60]
    with h5py.File(path, "w") as f:
        scan = f.create_group("measurements").create_dataset(
            "scan1", data=np.exp(-((x - 30) ** 2 + (y - 20) ** 2) / 80.0) + 0.01 * x)
        scan.attrs["operator"] = "someone"
        f["notes"] = "a file streamsave did not write"
    with ViewServer(path) as srv:
        browser.get(srv.url)
        wait_for(browser, lambda d: panel_frames(d, "measurements/scan1") == "40", "the dataset in the panel")
        open_path(browser, "/measurements/scan1")
        assert_plot_drawn(browser, "a plain 2D dataset")
        open_path(browser, "/notes")
        wait_for(browser, lambda d: "a file streamsave did not write" in d.find_element(By.TAG_NAME, "body").text,
                 "a string dataset")
