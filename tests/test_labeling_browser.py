"""The labeling page in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

The page loads, both clips play (their time advances, together), ← stores "left" in the database and the
prefetched next pair is on screen at once; on a phone-sized screen the two clips still sit side by side and a
tap on a button answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefrl.label_store import LabelStore
from prefrl.labeling_gui.server import ServerSettings, create_app
from tests.labeling_helpers import fill_env, serve, wait_for

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Skipped on a developer's machine without Chromium; under CI (.ci/run installs it) a missing browser fails.
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium: apt-get install -y chromium",
)

VISIBLE = "#slot-{side} video:not(.standby)"
PLAYING_TIMES = """() => ['left', 'right'].map(s => {
    const v = document.querySelector(`#slot-${s} video:not(.standby)`);
    return v ? v.currentTime : -1; })"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, list[int]]]:
    store_path = tmp_path / "labels.sqlite"
    ids = fill_env(store_path, "prefrl/InvertedPendulum-v0", 3, length=38)  # 1.5 s clips
    app = create_app(ServerSettings(run_dir=tmp_path, clip_size=(160, 120)))
    with serve(app) as url, LabelStore(store_path) as store:
        wait_for(lambda: not store.segments_without_clips(), timeout_s=60)
        yield url, store_path, ids


def answer_of(store_path: Path, query_id: int) -> dict[str, object] | None:
    with LabelStore(store_path) as store:
        return next((r for r in store.answer_records() if r["query_id"] == query_id), None)


def test_clips_play_and_left_arrow_answers(browser, site) -> None:  # type: ignore[no-untyped-def]
    url, store_path, (q1, q2, _) = site
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/?labeler=tester")
    page.wait_for_selector(f'#stage[data-query-id="{q1}"]')
    assert "pole" in page.inner_text("#instructions")  # the task's instructions are shown

    # Both clips play, in step: their time advances together.
    page.wait_for_function(f"({PLAYING_TIMES})().every(t => t > 0.2)", timeout=15000)
    first = page.evaluate(PLAYING_TIMES)
    time.sleep(0.3)
    second = page.evaluate(PLAYING_TIMES)
    assert all(b > a for a, b in zip(first, second, strict=True)), (first, second)
    assert abs(second[0] - second[1]) < 0.15
    # Playback speed and replay act on both clips.
    page.select_option("#speed", "2")
    assert page.evaluate(
        "[...document.querySelectorAll('#stage video:not(.standby)')].map(v => v.playbackRate)"
    ) == [2, 2]
    page.click("#replay")
    assert max(page.evaluate(PLAYING_TIMES)) < 0.5

    # The next pair is already downloaded and decoded, waiting off screen.
    page.wait_for_function(
        "[...document.querySelectorAll('#stage video.standby')].filter(v => v.readyState >= 2).length === 2"
    )
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f'#stage[data-query-id="{q2}"]', timeout=2000)
    assert page.evaluate("window.prefrl.lastSwitchMs") <= 200
    page.wait_for_function(  # the shown pair plays at once (a loaded machine may take a moment to seek)
        "[...document.querySelectorAll('#stage video:not(.standby)')].every(v => v.readyState >= 2)",
        timeout=1000,
    )
    record = wait_for(lambda: answer_of(store_path, q1), timeout_s=10)
    assert record["choice"] == "left" and record["labeler"] == "tester" and record["seconds"] > 0
    page.wait_for_function("document.getElementById('count').textContent === '1'")
    page.close()


def test_phone_sized_screen(browser, site) -> None:  # type: ignore[no-untyped-def]
    url, store_path, (q1, _, _) = site
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(f"{url}/?labeler=phone")
    page.wait_for_selector(f'#stage[data-query-id="{q1}"]')
    page.wait_for_function(f"({PLAYING_TIMES})().every(t => t > 0.1)", timeout=15000)
    left = page.locator(VISIBLE.format(side="left")).bounding_box()
    right = page.locator(VISIBLE.format(side="right")).bounding_box()
    assert left and right and left["x"] + left["width"] <= right["x"] and right["x"] + right["width"] <= 375
    assert left["width"] > 120 and left["y"] + left["height"] < 740  # side by side, on screen
    for choice in ("left", "equal", "skip", "right"):
        box = page.locator(f'#answers [data-choice="{choice}"]').bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["height"] >= 40
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    page.tap('#answers [data-choice="right"]')
    record = wait_for(lambda: answer_of(store_path, q1), timeout_s=10)
    assert record["choice"] == "right" and record["labeler"] == "phone"
    context.close()


@pytest.mark.parametrize("width, height", [(1366, 768), (375, 740)])
def test_the_name_prompt_covers_the_whole_first_screen(browser, site, width, height) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = site
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)  # no labeler yet: the page asks for a name first
    page.wait_for_selector("#name-form:not([hidden])")
    box = page.locator("#name-form").bounding_box()
    assert box and (box["x"], box["y"], box["width"], box["height"]) == (0, 0, width, height)
    # Nothing of the labeling page shows through, at the sides or anywhere else.
    points = [(5, 5), (width - 5, 5), (5, height - 5), (width - 5, height - 5), (width // 2, height // 3)]
    for x, y in points:
        assert page.evaluate(
            f"document.getElementById('name-form').contains(document.elementFromPoint({x}, {y}))"
        )
    assert page.evaluate("getComputedStyle(document.getElementById('name-form')).backgroundColor") == (
        "rgb(246, 247, 249)"
    )  # opaque
    card = page.locator("#name-form .name-card").bounding_box()
    assert card and card["width"] <= 480 and abs(card["x"] + card["width"] / 2 - width / 2) < 2  # centred
    page.fill("#name-input", "ada")
    page.keyboard.press("Enter")
    page.wait_for_selector("#name-form", state="hidden")
    page.close()
