"""The Recognize tab's URL box and Channels menu, through the handler the button calls."""

from __future__ import annotations

import dataclasses
import http.server
import threading

import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.ui import handlers


@pytest.fixture
def origin(tmp_path):
    clip = write_audio(tmp_path / "stereo.wav", tone(1.0, 16000, channels=2), 16000).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/backslash":  # a malformed redirect: httpx raised InvalidURL, the card said internal_error
                self.send_response(302)
                self.send_header("Location", f"http:\\\\127.0.0.1:{self.server.server_address[1]}\\stereo.wav")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(clip)))
            self.end_headers()
            self.wfile.write(clip)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(settings, engine):
    svc = Service(dataclasses.replace(settings, url_allow=("127.0.0.1",)), engine=engine)
    svc.start()
    yield svc
    svc.stop()


def test_url_box_runs_with_the_chosen_channel(service, origin):
    view = handlers.recognize(service, None, "utterance", False, url=f" {origin}/stereo.wav ", channels="right")
    assert view.error_code is None, view.card_html
    run = next(iter((service.settings.output_dir).glob("outputs_*")))
    import json

    audio = json.loads((run / "result.json").read_text("utf-8"))["audio"]
    assert (audio["channels"], audio["channel_index"], audio["source_name"]) == ("right", 1, "stereo.wav")
    assert audio["source_url"] == f"{origin}/stereo.wav"


@pytest.mark.parametrize(
    ("url", "channels", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "mix", "url_forbidden"),
        ("file:///etc/passwd", "mix", "url_forbidden"),
        ("", "mix", "bad_request"),
        ("{origin}/stereo.wav", "sideways", "bad_request"),
        ("{origin}/stereo.wav", "7", "audio_no_stream"),
        ("{origin}/backslash", "mix", "url_unreachable"),
        ("http://[::1/a.wav", "mix", "bad_request"),
    ],
)
def test_url_box_errors_are_cards(service, origin, url, channels, code):
    view = handlers.recognize(service, None, "utterance", False, url=url.replace("{origin}", origin), channels=channels)
    assert view.error_code == code, view.card_html
