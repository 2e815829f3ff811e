"""REST: ``calibration`` and ``min_confidence`` on POST /api/v1/recognize, and /api/v1/calibrations (in-process app)."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.engine.result import softmax
from emotion2vec_webui.labels import EMOTIONS
from tests.head_data import app_client
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def setup(engine, tiny_model_dir, tmp_path_factory):
    from emotion2vec_webui.audio.signals import tone, write_audio
    from emotion2vec_webui.engine.calibration import NINE, Calibration
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    root = tmp_path_factory.mktemp("calibration_api")
    bias = np.random.default_rng(2).normal(0, 0.5, 9)
    calibration = Calibration("cool", NINE, tuple(EMOTIONS), 0.4, bias, checkpoint_sha256(tiny_model_dir),
                              info={"before": {"ece": 0.3}, "after": {"ece": 0.05}, "n": 40})  # fmt: skip
    write_calibration(root / "heads", calibration, b"\x89PNG\r\n\x1a\nfake", "test")
    clip = write_audio(root / "clip.wav", tone(1.2, 16000, freq=260.0)[:, 0], 16000, "wav").read_bytes()
    with app_client(engine, tiny_model_dir, root) as (client, _, _):
        yield client, calibration, clip


def post(client, clip: bytes, **fields):
    return client.post("/api/v1/recognize", files={"file": ("clip.wav", clip, "audio/wav")}, data=fields)


def test_recognize_with_a_calibration_and_a_threshold(setup):
    client, calibration, clip = setup
    plain = post(client, clip, extract_embedding="false")
    assert plain.status_code == 200, plain.text
    raw = plain.json()
    assert raw["calibration"] is None and raw["uncertain"] is False and raw["min_confidence"] is None

    calibrated = post(client, clip, extract_embedding="false", calibration="cool", min_confidence="0.5")
    assert calibrated.status_code == 200, calibrated.text
    got = calibrated.json()
    check_result(got)
    assert got["calibration"]["name"] == "cool" and got["calibration"]["temperature"] == pytest.approx(0.4)
    want = softmax(np.log([raw["scores"][e] for e in EMOTIONS]) / 0.4 + calibration.bias)
    np.testing.assert_allclose([got["scores"][e] for e in EMOTIONS], want, atol=1e-5)
    assert got["min_confidence"] == 0.5 and got["uncertain"] == (got["confidence"] < 0.5)

    # The JSON body takes the same fields; a threshold above every score makes the answer uncertain.
    import base64

    body = {"audio_base64": base64.b64encode(clip).decode(), "calibration": "cool", "min_confidence": 1.0,
            "extract_embedding": False}  # fmt: skip
    as_json = client.post("/api/v1/recognize", json=body).json()
    assert as_json["uncertain"] is True and as_json["emotion"] == got["emotion"]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"min_confidence": "2"}, 422, "bad_request"),
        ({"min_confidence": "nan"}, 422, "bad_request"),
        ({"calibration": "../cool"}, 422, "bad_request"),
        ({"calibration": "missing"}, 404, "not_found"),
    ],
)
def test_bad_calibration_fields_are_refused(setup, fields, status, code):
    client, _, clip = setup
    r = post(client, clip, **fields)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_calibrations_are_listed_with_their_diagram(setup):
    client, _, _ = setup
    listed = client.get("/api/v1/calibrations").json()["calibrations"]
    assert [(c["name"], c["target"], c["ece_before"], c["ece_after"]) for c in listed] == [("cool", "nine", 0.3, 0.05)]
    png = client.get("/api/v1/calibrations/cool/reliability.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert client.get("/api/v1/calibrations/..x/reliability.png").status_code == 422
    assert client.get("/api/v1/calibrations/nope/reliability.png").status_code == 404
