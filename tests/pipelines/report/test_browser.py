"""The report in a real browser: headless Debian `chromium` opens index.html from disk.

The page's own `?selfcheck` script loads every image and audio file and writes its verdict into
<body data-assets-ok>; the test reads it from the DOM chromium dumps. Chromium is installed with
apt-get where missing (root + apt only); the tests skip, saying why, only where it cannot be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from report_render_fixture import build_report

from pipelines.report.render import SECTIONS, render

INSTALL_BUDGET_S = 500  # apt-get update + install took ~60-120 s on the project's machines
SCREENSHOT_COPY = Path(__file__).resolve().parents[3] / "bench" / "out" / "report-screenshot.png"


def _apt(args: list[str], deadline: float) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        left = max(deadline - time.monotonic(), 1)
        run = subprocess.run(["apt-get", *args], env=env, capture_output=True, timeout=left)
    except subprocess.TimeoutExpired:
        return False
    return run.returncode == 0


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(
            "chromium is not installed and cannot be: installing needs root and apt-get "
            "(run `apt-get install -y chromium`)"
        )
    deadline = time.monotonic() + INSTALL_BUDGET_S
    # An up-to-date package list is usually there; refresh it only when the first try fails.
    if not _apt(["install", "-y", "chromium"], deadline) and _apt(["update"], deadline):
        _apt(["install", "-y", "chromium"], deadline)
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"`apt-get install -y chromium` failed or took over {INSTALL_BUDGET_S} s: no browser to test in")
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    return render(build_report(root), root / "report")


def _chromium(binary: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _console(stderr: str) -> list[str]:
    """Chromium logs every console message of the page (errors included) as INFO:CONSOLE lines."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _body(dom: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def test_every_section_image_and_audio_file_loads_without_console_errors(chromium, page, tmp_path):
    run = _chromium(chromium, tmp_path / "profile", page.as_uri() + "?selfcheck", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom, sid
    body = _body(dom)
    media = len(re.findall(r"<(img|audio)\b", page.read_text(encoding="utf-8")))
    assert body.get("data-assets-checked") == str(media), f"the self-check did not finish: {body}"
    assert body.get("data-assets-ok") == "true", body.get("data-assets-failed")
    assert re.search(r'<form id="scope-form"\s*>', dom), "the page's script did not run (blocked by its CSP?)"
    assert _console(run.stderr) == []


def test_the_self_check_reports_a_missing_file(chromium, page, tmp_path):
    broken = tmp_path / "report"
    shutil.copytree(page.parent, broken)
    (broken / "assets/spec/fs_123.png").unlink()
    (broken / "assets/audio/yt_abc-000.flac").write_bytes(b"not audio")
    run = _chromium(chromium, tmp_path / "profile", (broken / "index.html").as_uri() + "?selfcheck", "--dump-dom")
    body = _body(run.stdout)
    assert body.get("data-assets-ok") == "false"
    assert sorted(body["data-assets-failed"].split()) == ["assets/audio/yt_abc-000.flac", "assets/spec/fs_123.png"]


def test_screenshot_is_saved_as_an_artefact(chromium, page, tmp_path):
    shot = tmp_path / "report-screenshot.png"
    run = _chromium(
        chromium,
        tmp_path / "profile",
        page.as_uri(),
        "--hide-scrollbars",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # drawn, not blank
    try:
        SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT_COPY)
    except OSError:
        pass  # a read-only checkout: the copy under pytest's tmp path is the artefact
