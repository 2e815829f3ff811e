"""The web UI in a real browser (Debian's Chromium through pytest-playwright), against the real server.

The server is the session's shared one in the default configuration (``shared_server()``:
``python -m emotion2vec_webui serve`` on a free port with the tiny random-weight model).
Screenshots go to the test's tmp dir and, for people to look at, to /tmp/e2v_screens/.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.storage import RUN_ID_RE

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/e2v_screens")
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
BUSY_MACHINE_TIMEOUT_MS = 90_000  # clicks and waits on a loaded CI machine (2 cores shared) can take long


@pytest.fixture(autouse=True)
def patient_expect():
    """``expect`` waits up to BUSY_MACHINE_TIMEOUT_MS in this module (Playwright's default is 5 s)."""
    expect.set_options(timeout=BUSY_MACHINE_TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture
def page(page):
    """pytest-playwright's page, with timeouts for a busy machine."""
    page.set_default_timeout(BUSY_MACHINE_TIMEOUT_MS)
    return page


@pytest.fixture(scope="module")
def server(shared_server):
    """The server in the default configuration (tests/conftest.py's shared_server), shared with other modules:
    this module looks only at its own runs. How long ``/`` took after the process started was recorded then."""
    return shared_server()


def screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    # Crop to the viewport's width: Gradio's off-screen overflow tab buttons widen a full-page shot.
    from PIL import Image

    with Image.open(path) as image:
        width = page.viewport_size["width"]
        if image.width > width:
            image.crop((0, 0, width, image.height)).save(path)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)
    return path


def upload(page, path: Path, playable: bool = True) -> None:
    """Upload through the file input; wait for the player (or, for a file the browser cannot play, its link)."""
    page.locator("#audio_in input[type=file]").set_input_files(str(path))
    if playable:
        expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()
    else:
        expect(page.locator(f"#audio_in a[href$='/{path.name}']")).to_be_attached()


def test_page_answers_before_the_model_is_loaded(server):
    print(
        f"\nfirst page after {server.first_page_s:.2f} s wall, {server.first_page_cpu_s:.2f} s server CPU "
        f"(model ready then: {server.ready_at_first_page})"
    )
    # Generous bounds: the printed figures are what matter (issue: within 5 s). Wall time on a shared
    # 2-core machine swings with the load (9-74 s seen at load 10-28), so the firm bound is on CPU seconds.
    assert server.first_page_cpu_s < 30
    assert server.first_page_s < 180


def test_frame_recognition_end_to_end(server, page, speech_wav, tmp_path):
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    expect(page.locator("#model_status [data-state=random_weights]")).to_be_visible()
    upload(page, speech_wav)
    embedding_box = page.locator("#extract_embedding input[type=checkbox]")
    expect(embedding_box).to_be_checked()
    page.locator("#granularity input[value=frame]").check()
    expect(embedding_box).not_to_be_checked()  # frames: ~12 MB a minute, so the box is unticked (issue 33)
    embedding_box.check()
    page.click("#run_button")

    card = page.locator("#result_card .e2v-card[data-emotion]")
    expect(card).to_be_visible()
    rows = page.locator("#result_card .e2v-row")
    expect(rows).to_have_count(9)
    shown = rows.evaluate_all("els => els.map(e => [e.dataset.emotion, e.querySelector('.e2v-pct').textContent])")
    assert sorted(k for k, _ in shown) == sorted(EMOTIONS)
    percents = [float(p.rstrip("%")) for _, p in shown]
    assert abs(sum(percents) - 100) < 1.0 and percents == sorted(percents, reverse=True)
    expect(page.locator("#timeline .e2v-tl[data-ready='1']")).to_be_visible()  # the interactive timeline
    expect(page.locator("#segments table")).to_be_visible()

    links = page.locator("#downloads a[download]")
    expect(links).to_have_count(4)
    hrefs = {a.get_attribute("download"): a.get_attribute("href") for a in links.all()}
    assert set(hrefs) == {"result.json", "processed_audio.wav", "embedding.npy", "frames.csv"}
    got = {name: httpx.get(href, timeout=30) for name, href in hrefs.items()}
    assert all(r.status_code == 200 for r in got.values())
    result = json.loads(got["result.json"].content)
    assert result["granularity"] == "frame" and result["emotion"] == card.get_attribute("data-emotion")
    assert len(result["segments"]) == page.locator("#segments tbody tr").count()
    info = sf.info(io.BytesIO(got["processed_audio.wav"].content))
    assert (info.samplerate, info.channels) == (16000, 1)
    embedding = np.load(io.BytesIO(got["embedding.npy"].content))
    assert embedding.ndim == 2 and embedding.dtype == np.float32  # [T, D] at frame granularity
    run_id = re.search(r"outputs_\d{8}_\d{6}(_\d+)?", page.locator("#run_folder").inner_text()).group(0)
    assert RUN_ID_RE.match(run_id) and (server.outputs / run_id / "result.json").is_file()
    screenshot(page, tmp_path, "recognize_frame_laptop")
    page.set_viewport_size(PHONE)
    screenshot(page, tmp_path, "recognize_frame_phone")

    # History: the run is listed and reopens with the same card.
    page.set_viewport_size(LAPTOP)
    page.get_by_role("tab", name=re.compile("History")).click()
    table = page.locator("#history_table")
    expect(table).to_contain_text("speech.wav")  # the newest run (the run id is a column on demand)
    table.get_by_role("gridcell").filter(has_text="speech.wav").first.click()
    expect(page.locator("#history_run_folder")).to_contain_text(run_id)
    history_card = page.locator(f"#history_card .e2v-card[data-emotion={result['emotion']}]")
    expect(history_card).to_be_visible()
    expect(page.locator("#history_card .e2v-row")).to_have_count(9)
    expect(page.locator("#history_downloads a[download]")).to_have_count(4)
    screenshot(page, tmp_path, "history_laptop")


def test_a_ten_minute_file_shows_window_progress_with_an_eta(server, page, tmp_path):
    # 600 s in E2V_WINDOW_S (30 s) windows: the bar must move through the windows, with an ETA (issue 33).
    rng = np.random.default_rng(3)
    long_wav = tmp_path / "ten_minutes.wav"
    sf.write(long_wav, (0.05 * rng.standard_normal(600 * 16000)).astype(np.float32), 16000, subtype="PCM_16")
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    upload(page, long_wav)  # utterance granularity: windows all the same, and no 30,000-frame timeline to draw
    page.evaluate(
        """() => { window.__e2vSteps = new Set();
        window.__e2vTimer = setInterval(() => document.querySelectorAll('#result_card .progress-text, '
          + '#result_card .progress-level-inner').forEach((n) => window.__e2vSteps.add(n.textContent.trim())), 40); }"""
    )
    page.click("#run_button")
    # ~2 min on a quiet 2-core machine; under a full suite's load it can take several times that
    expect(page.locator("#result_card .e2v-card[data-emotion]")).to_be_visible(timeout=600_000)
    steps = page.evaluate("() => { clearInterval(window.__e2vTimer); return [...window.__e2vSteps]; }")
    windows = {s for s in steps if re.search(r"window \d+ of \d+", s)}
    assert len(windows) >= 10, steps
    assert any(re.search(r"about \d+:\d\d left", s) for s in windows), steps


def test_corrupt_upload_shows_a_readable_error(server, page, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(np.random.default_rng(0).bytes(4000))
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    upload(page, broken, playable=False)
    page.click("#run_button")
    error = page.locator("#result_card .e2v-error[data-error-code=audio_undecodable]")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Cannot decode")
    expect(error).to_contain_text("broken.wav")
    assert "Traceback" not in page.content()
    expect(page.locator("#downloads")).to_be_hidden()
    screenshot(page, tmp_path, "corrupt_upload_error")


def test_microphone_recording_is_recognized(server, browser_type, browser_type_launch_args, tmp_path):
    """Chromium's fake microphone (a beep): the recording arrives as a 44.1 kHz file and is resampled."""
    launch = {**browser_type_launch_args}
    launch["args"] = [*launch.get("args", []), "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    browser = browser_type.launch(**launch)
    try:
        page = browser.new_context(viewport=LAPTOP, permissions=["microphone"]).new_page()
        page.set_default_timeout(BUSY_MACHINE_TIMEOUT_MS)
        page.goto(server.url)
        page.locator("#audio_in button[aria-label$='Record audio']").click()
        page.locator("#audio_in button.record-button").click()
        page.wait_for_timeout(2000)
        page.locator("#audio_in button.stop-button").click()
        expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()
        # the recording is uploaded after Stop; its download link appears when the server has it
        expect(page.locator("#audio_in a[href*='/gradio_api/file=']")).to_have_count(1)
        page.click("#run_button")
        expect(page.locator("#result_card .e2v-card[data-emotion]")).to_be_visible()
        expect(page.locator("#result_card .e2v-row")).to_have_count(9)
        href = page.locator("#downloads a[download='result.json']").get_attribute("href")
        audio = json.loads(httpx.get(href, timeout=30).content)["audio"]
        assert audio["sample_rate"] == 16000 and audio["duration_s"] > 0.5
        print(f"\nmicrophone recording: {audio['original_sample_rate']} Hz, {audio['duration_s']} s")
        screenshot(page, tmp_path, "microphone_recording")
    finally:
        browser.close()


def test_uploaded_mp3_shows_its_duration_before_play(server, page, tmp_path):
    """The Recognize tab's player shows an mp3's length once it is loaded, not 0:00 until played (issue 17)."""
    import subprocess

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    mp3 = tmp_path / "clip.mp3"  # VBR, 22.05 kHz mono: no constant bitrate to read the length from
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=12:c=pink:a=0.2",
                    "-ac", "1", "-ar", "22050", "-q:a", "4", str(mp3)], check=True)  # fmt: skip
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    upload(page, mp3)
    duration = page.locator("#audio_in time#duration")
    expect(duration).to_be_visible()
    expect(duration).not_to_have_text("0:00")
    minutes, seconds = duration.inner_text().split(":")
    assert abs(int(minutes) * 60 + int(seconds) - 12) <= 1, duration.inner_text()
    expect(page.locator("#audio_in time#time")).to_have_text("0:00")  # not played
    expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()


def test_history_batch_row_expands_to_its_summary_and_runs(server, page, tmp_path):
    """A batch made on the Batch tab is one History row; clicked, it shows its summary and its runs, which reopen."""
    from emotion2vec_webui.audio.signals import noise, tone, write_audio

    clips = [
        write_audio(tmp_path / "batch_a.wav", tone(1.5, 16000), 16000, "wav"),
        write_audio(tmp_path / "batch_b.wav", noise(1.5, 16000, seed=2), 16000, "wav"),
    ]
    outputs = server.outputs
    before = {p.name for p in outputs.iterdir()}
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    page.get_by_role("tab", name=re.compile("Batch")).click()
    page.locator("#batch_files input[type=file]").set_input_files([str(p) for p in clips])
    expect(page.locator("#batch_files tbody tr")).to_have_count(2)  # both uploaded
    page.click("#batch_button")
    expect(page.locator("#batch_summary_text")).to_be_visible()
    batches = [p for p in outputs.iterdir() if p.name not in before and (p / "batch.json").is_file()]
    assert len(batches) == 1, sorted(p.name for p in outputs.iterdir())
    batch = batches[0].name
    runs = sorted(f"{batch}~{p.name}" for p in batches[0].iterdir() if RUN_ID_RE.match(p.name))
    assert len(runs) == 2

    page.get_by_role("tab", name=re.compile("History")).click()
    table = page.locator("#history_table")
    batch_row = table.locator("[data-index]").filter(has_text=batch)
    expect(batch_row).to_have_count(1)  # one row for the batch, not one per file
    expect(batch_row).to_contain_text("· 2")
    expect(table.locator("[data-index]").filter(has_text="batch_a.wav")).to_have_count(0)
    table.get_by_role("gridcell").filter(has_text=batch).first.click()
    panel = page.locator(f"#history_batch #history_batch_panel[data-batch='{batch}']")
    expect(panel).to_be_visible()
    expect(page.locator("#history_batch_summary")).to_contain_text("2")
    children = table.locator("[data-index]").filter(has_text="↳")
    expect(children).to_have_count(2)
    expect(children.filter(has_text="batch_a.wav")).to_have_count(1)
    expect(children.filter(has_text="batch_b.wav")).to_have_count(1)
    screenshot(page, tmp_path, "history_batch_expanded")
    table.get_by_role("gridcell").filter(has_text="batch_b.wav").first.click()
    run_b = next(r for r in runs if json.loads((outputs / r.replace("~", "/") / "result.json").read_text())["audio"]["source_name"] == "batch_b.wav")
    result = json.loads((outputs / run_b.replace("~", "/") / "result.json").read_text("utf-8"))
    expect(page.locator(f"#history_card .e2v-card[data-emotion={result['emotion']}]")).to_be_visible()
    expect(page.locator("#history_card .e2v-row")).to_have_count(9)
    expect(page.locator("#history_run_folder")).to_contain_text(run_b)
    expect(page.locator("#history_downloads a[download='result.json']")).to_have_count(1)
    table.get_by_role("gridcell").filter(has_text=batch).first.click()  # folds again
    expect(children).to_have_count(0)


def _history(page, server) -> None:
    page.set_viewport_size(LAPTOP)
    page.goto(server.url)
    page.get_by_role("tab", name=re.compile("History")).click()
    expect(page.locator("#history_status_line")).to_be_visible()


def _search(page, text: str) -> None:
    box = page.locator("#history_q").get_by_role("textbox")
    box.fill(text)
    box.press("Enter")


def _pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=re.compile(option)).first.click()


def _files(table) -> list[str]:
    rows = table.locator("[data-index]").evaluate_all(  # Gradio 6's table: a div per row, a div per cell
        "rows => rows.map(r => [...r.querySelectorAll('[data-col]')].map(c => c.innerText.trim()))"
    )
    return [r[1] for r in rows if len(r) > 1]


def test_history_search_by_file_name_and_by_emotion(server, page):
    from tests.catalog_data import write_single

    outputs = server.outputs
    # written by this process into the server's catalog (two writers on one file)
    write_single(outputs, 3, "zebra_meeting_1.wav", emotion="happy")
    write_single(outputs, 4, "zebra_meeting_2.wav", emotion="angry")
    write_single(outputs, 5, "yak_call.wav", emotion="angry")
    _history(page, server)
    table = page.locator("#history_table")
    _search(page, "ZEBRA_meet")
    expect(table.locator("[data-index]")).to_have_count(2)
    assert sorted(_files(table)) == ["zebra_meeting_1.wav", "zebra_meeting_2.wav"]
    expect(page.locator("#history_status_line")).to_have_attribute("data-total", "2")
    _pick(page, "history_emotion", "angry")  # the search stays: zebra and angry
    expect(table.locator("[data-index]")).to_have_count(1)
    assert _files(table) == ["zebra_meeting_2.wav"]
    _search(page, "")  # every angry run: ours, and any the random model called angry
    expect(table.locator("[data-index]").filter(has_text="yak_call.wav")).to_have_count(1)
    cells = table.locator("[data-index]").evaluate_all("rows => rows.map(r => r.innerText)")
    assert all("angry" in c for c in cells) and not any("zebra_meeting_1" in c for c in cells), cells


def test_history_reopens_a_conversation_with_lanes_and_transcript(server, page, tmp_path):
    from tests.catalog_data import conversation, result, write_single

    outputs = server.outputs
    call = write_single(outputs, 6, "zz_call_center.wav", **conversation(6),
                        audio={**result(6, "zz_call_center.wav")["audio"], "duration_s": 6.0})  # fmt: skip
    _history(page, server)
    _search(page, "zz_call_center")
    table = page.locator("#history_table")
    expect(table.locator("[data-index]")).to_have_count(1)
    expect(table).to_contain_text("conversation")
    table.get_by_role("gridcell").filter(has_text="zz_call_center.wav").first.click()
    view = page.locator("#history_conversation .e2v-conv")
    expect(view).to_be_visible()
    lanes = page.locator("#history_conversation .e2v-conv-lane[data-speaker]").filter(has=page.locator(".e2v-conv-track"))
    expect(lanes).to_have_count(2)
    turns = page.locator("#history_conversation .e2v-conv-item")
    expect(turns).to_have_count(6)
    expect(turns.nth(5)).to_contain_text("turn 5 words")
    assert [turns.nth(i).get_attribute("data-speaker") for i in range(3)] == ["left", "right", "left"]
    expect(page.locator("#history_conversation audio#conversation_player")).to_be_attached()
    expect(page.locator("#history_run_folder")).to_contain_text(call)
    screenshot(page, tmp_path, "history_conversation")


def test_history_table_fits_1280_and_deletes_after_asking(server, page, tmp_path):
    from tests.catalog_data import write_single

    outputs = server.outputs
    doomed = write_single(outputs, 7, "a_rather_long_recording_name_from_the_call_centre_0042.wav")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(server.url)
    page.get_by_role("tab", name=re.compile("History")).click()
    table = page.locator("#history_table")
    expect(table.locator("[data-index]").first).to_be_visible()

    def fits() -> dict:
        """The page's width, the table's right edge, horizontal scrollbars in it, cells past its edge."""
        return page.evaluate("""() => {
            const t = document.querySelector('#history_table');
            const right = t.getBoundingClientRect().right;
            const scrollers = [...t.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1 &&
                ['auto', 'scroll'].includes(getComputedStyle(e).overflowX));
            const cut = [...t.querySelectorAll('[data-col], th')].filter(c => c.getBoundingClientRect().right > right + 1);
            return {page: document.documentElement.scrollWidth, table: right, scrollers: scrollers.length,
                    cut: cut.length};
        }""")

    box = fits()
    assert box["page"] <= 1280 and box["table"] <= 1280 and box["scrollers"] == 0 and box["cut"] == 0, box
    screenshot(page, tmp_path, "history_1280")
    page.locator("#history_more").get_by_text(re.compile("More filters")).click()
    page.locator("#history_columns").get_by_text(re.compile("duration")).click()
    page.locator("#history_columns").get_by_text(re.compile("run$")).click()
    expect(table).to_contain_text(doomed)  # the run id, on demand
    box = fits()
    assert box["page"] <= 1280 and box["scrollers"] == 0 and box["cut"] == 0, box

    _search(page, "a_rather_long_recording")
    expect(table.locator("[data-index]")).to_have_count(1)
    table.get_by_role("gridcell").filter(has_text="a_rather_long").first.click()
    expect(page.locator("#history_run_folder")).to_contain_text(doomed)
    page.click("#history_delete")
    expect(page.locator("#history_confirm_text")).to_contain_text(doomed)
    page.click("#history_delete_no")  # not yet
    expect(page.locator("#history_confirm_text")).to_be_hidden()
    assert (outputs / doomed).is_dir()
    page.click("#history_delete")
    page.click("#history_delete_yes")
    expect(page.locator("#history_deleted")).to_contain_text(doomed)
    expect(table).to_contain_text("no matching runs")
    assert not (outputs / doomed).exists()
