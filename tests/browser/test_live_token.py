"""The Live tab on a server with an API token: the logged-in page streams with a ticket, never the token.

On the shared token server (tests/conftest.py's ``token_api_server``) Chromium
logs in (any user name, the token as password), records a few seconds from
its fake microphone on the Live tab and stops. The take must come back as the
Live tab's run; the socket must have been opened with ``?ticket=`` and the
token must appear nowhere the page can see (its HTML, the socket's URL or any
frame it sent). A page that is not logged in never reaches the tab.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from playwright.sync_api import expect

from emotion2vec_webui.audio.signals import write_audio

pytestmark = pytest.mark.browser

RATE = 48000
RECORD, STOP = "录制 / Record", "停止 / Stop"


def test_the_logged_in_live_tab_streams_with_a_ticket_and_never_sees_the_token(
    token_api_server, browser_type, browser_type_launch_args, tmp_path
):
    srv = token_api_server
    rng = np.random.default_rng(5)
    t = np.arange(int(0.1 * RATE)) / RATE
    source = 0.4 * np.concatenate([np.sin(2 * np.pi * f * t) * np.hanning(len(t)) for f in rng.uniform(200, 2000, 60)])
    mic = write_audio(tmp_path / "mic.wav", source.astype(np.float32), RATE, "wav")
    args = [*browser_type_launch_args.get("args", []), "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}"]  # fmt: skip
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    sockets, sent = [], []
    try:
        stranger = browser.new_context().new_page()
        stranger.goto(srv.url)
        expect(stranger.locator("input[type='password']")).to_be_visible(timeout=30_000)  # the login, not the UI
        assert stranger.locator("#live_tab").count() == 0

        context = browser.new_context(permissions=["microphone"])
        answer = context.request.post(srv.url + "/login", form={"username": "me", "password": srv.token})
        assert answer.ok, answer.status
        page = context.new_page()

        def on_socket(ws):
            sockets.append(ws.url)
            ws.on("framesent", lambda payload: sent.append(payload if isinstance(payload, str) else ""))

        page.on("websocket", on_socket)
        page.goto(srv.url)
        page.get_by_role("tab", name="Live").click()
        expect(page.locator("#live_audio select option").nth(1)).to_be_attached(timeout=30_000)
        page.get_by_role("button", name=RECORD, exact=True).click()
        page.wait_for_function("() => window.__e2vTake && window.__e2vTake.t0", timeout=30_000)
        expect(page.locator("#live_status .e2v-live-status[data-ticks='0']")).not_to_be_attached(timeout=60_000)
        page.get_by_role("button", name=STOP, exact=True).click()
        expect(page.locator("#live_run_folder")).to_contain_text("outputs_", timeout=120_000)
        run_id = page.locator("#live_run_folder code").inner_text().strip()
        html = page.content()
    finally:
        browser.close()
    stream_urls = [u for u in sockets if "/api/v1/stream" in u]
    assert len(stream_urls) == 1 and "?ticket=" in stream_urls[0], sockets
    assert srv.token not in html and not any(srv.token in u for u in sockets)
    assert not any(srv.token in text for text in sent) and any('"type": "start"' in t or '"type":"start"' in t
                                                               for t in sent)  # fmt: skip
    result = json.loads((srv.outputs / run_id / "result.json").read_text("utf-8"))
    assert result["audio"]["container"] == "microphone" and result["stream"]["encoding"] == "f32le"
    assert result["audio"]["duration_s"] >= 1.0
