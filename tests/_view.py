"""What the viewer's tests share: the real ``streamsave view`` server in a subprocess,
plain HTTP requests to it, and a headless Chromium driven by Selenium.

The browser is Debian's ``chromium`` with ``chromium-driver`` (``.ci/run`` installs them).
Where they are missing the browser tests are skipped, except in CI
(``STREAMSAVE_REQUIRE_BROWSER=1``, which ``.ci/run`` sets, or ``CI`` set): there they fail.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

TIMEOUT: Final = 60
#: Chromium's flags for a headless run that touches no network but the server's
CHROMIUM_FLAGS: Final = ("--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         "--window-size=1400,900")


class ViewServer:
    """``python -m streamsave view PATH --no-browser`` in a subprocess."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-W", "error", "-m", "streamsave", "view", str(path),
                                      "--no-browser", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()  # the first line is the address
        if not self.url.startswith("http://"):
            out, err = self.proc.communicate(timeout=TIMEOUT)
            raise AssertionError(f"no address on stdout: {self.url!r} {out!r} {err!r}")
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                if self.request("/api/")[0] == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, self.proc.communicate()[1]
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)

    def request(self, target: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET ``target`` exactly as written (no normalisation, no re-encoding)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.putrequest("GET", target, skip_host=bool(headers and "Host" in headers), skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, route: str, **params: str) -> tuple[int, bytes]:
        """GET ``route`` with ``params`` encoded as a browser would."""
        return self.request(f"{route}?{urllib.parse.urlencode(params)}" if params else route)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, err

    def __enter__(self) -> ViewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=TIMEOUT)


def browser_required() -> bool:
    """Whether a missing browser fails the tests (CI) rather than skipping them."""
    return os.environ.get("STREAMSAVE_REQUIRE_BROWSER") == "1" or bool(os.environ.get("CI"))


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for name in ("chromium", "chromedriver"):
        if shutil.which(name) is None:
            return f"{name} is not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile; downloads go to ``driver.download_dir``."""
    reason = _missing()
    if reason is not None:
        if browser_required():
            pytest.fail(f"the browser tests need a browser in CI: {reason}")
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers on the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="streamsave-chromium-"))
    downloads = profile / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile / 'profile'}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    driver.download_dir = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``condition(driver)`` until it is truthy (Selenium's WebDriverWait), or fail saying ``what``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        text = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"timed out waiting for {what}; the page shows:\n{text}") from None
