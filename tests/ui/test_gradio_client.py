"""The Gradio app scripted through ``gradio_client``, against the real server (tiny random-weight model).

The server runs with an API token, so the page and the client log in (any user
name, the token as password) and the login itself is exercised.
"""

from __future__ import annotations

import pytest

from emotion2vec_webui.runs.storage import RUN_ID_RE
from tests.server_util import SHARED_API_TOKEN as TOKEN
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def server(token_api_server):
    """The token server shared with tests/serving/test_api.py (tests/conftest.py)."""
    return token_api_server


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, auth=("someone", TOKEN), verbose=False, download_files=False)


def test_recognize_endpoint_returns_result_json_and_writes_the_run(server, client, speech_wav):
    from gradio_client import handle_file

    result = client.predict(handle_file(str(speech_wav)), "frame", True, api_name="/recognize")
    check_result(result, "frame")
    assert result["audio"]["source_name"] == "speech.wav"
    assert RUN_ID_RE.match(result["run_id"])
    folder = server.root / "outputs" / result["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "embedding.npy",
        "frames.csv",  # frame granularity: one row of nine raw scores per frame
        "processed_audio.wav",
        "result.json",
        "run.log",
    ]


def test_recognize_endpoint_takes_an_optional_segmentation_last(client, speech_wav):
    from gradio_client import handle_file

    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/recognize"]["parameters"]
    segmentation = params[3]
    assert segmentation["parameter_has_default"] and segmentation["parameter_default"] == "frames"
    assert all(p["parameter_has_default"] for p in params[3:])  # segmentation, channels, head, audio_url
    result = client.predict(handle_file(str(speech_wav)), "utterance", False, "vad", api_name="/recognize")
    check_result(result, "utterance")
    assert result["segments"] and all(seg["source"] == "vad" for seg in result["segments"])
    # REST's other options by name (issue 27): channels taken, a bad one refused with its code
    result = client.predict(handle_file(str(speech_wav)), "utterance", False, channels="left", api_name="/recognize")
    assert result["audio"]["channel_index"] == 0


def test_recognize_endpoint_reports_error_codes(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"\x00\x01 not audio " * 100)
    with pytest.raises(AppError, match="audio_undecodable"):
        client.predict(handle_file(str(broken)), "utterance", False, api_name="/recognize")
    with pytest.raises(AppError, match="bad_request"):  # checked before the file is decoded
        client.predict(handle_file(str(broken)), "utterance", False, channels="centre", api_name="/recognize")


def test_api_lists_recognize_but_not_the_page_internals(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/recognize" in endpoints
    assert not any(name.startswith(("/on_", "/lambda")) for name in endpoints), sorted(endpoints)
    names = [p["parameter_name"] for p in endpoints["/recognize"]["parameters"]]
    assert names == ["audio", "granularity", "extract_embedding", "segmentation", "channels", "head", "audio_url"]
    assert all(p["label"] for p in endpoints["/recognize"]["parameters"])
    assert [r["label"] for r in endpoints["/recognize"]["returns"]] == ["result"]  # not value_N


def test_similarity_endpoint_returns_data_not_html(server, client, speech_wav, tmp_path):
    from gradio_client import handle_file

    from emotion2vec_webui.audio.signals import tone, write_audio

    other = write_audio(tmp_path / "tone.wav", tone(1.5, 16000), 16000, "wav")
    out = client.predict(handle_file(str(speech_wav)), handle_file(str(other)), api_name="/similarity")
    assert isinstance(out, dict), type(out)
    assert -1 <= out["cosine"] <= 1 and 0 <= out["scores_similarity"] <= 1 and "#66" in out["meaning"]
    assert out["a"]["source_name"] == "speech.wav" and out["b"]["source_name"] == "tone.wav"
    assert (server.root / "outputs" / "similarity" / f"{out['record']}.json").is_file()  # kept, for History
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/similarity"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["clip_a", "clip_b"]


def test_login_is_required_with_a_token(server):
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError/HTTP error here
        Client(server.url, auth=("someone", "wrong-token"), verbose=False)


def test_public_endpoints_have_descriptive_parameter_names(client):
    """view_api lists the scripting endpoints only, each parameter named for what it is (no gran/emb/seg)."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    internal = [n for n in endpoints if n.endswith("_ui") or n.startswith(("/on_", "/lambda", "/chunk", "/view"))]
    assert not internal, sorted(endpoints)
    names = {n: [p["parameter_name"] for p in e["parameters"]] for n, e in endpoints.items()}
    assert names["/batch"] == ["audio_files", "server_folder", "granularity", "save_embeddings", "head", "segmentation",
                               "channels", "audio_stream", "speakers", "num_speakers", "transcribe", "asr_model",
                               "calibration", "min_confidence", "label_set"]  # fmt: skip
    assert names["/calibrate"] == ["server_folder", "upload_file", "calibration_name", "head_name", "replace"]
    assert names["/train_head"] == [
        "server_folder", "upload", "head_name", "classifier", "labels_zh", "baseline_map", "overwrite",
    ]  # fmt: skip
    assert names["/similarity"] == ["clip_a", "clip_b"]
    terse = [(n, p) for n, ps in names.items() for p in ps if len(p) < 4 or p.endswith(("_v", "_value"))]
    assert not terse, names
