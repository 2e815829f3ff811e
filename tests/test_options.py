"""Options defined once and checked once (issue 27): options.py, RecognizeOptions.__post_init__, the faces.

- every option's bad value is refused when ``RecognizeOptions`` is built, naming the field in both languages;
- the REST face answers a bad option (``num_speakers=99`` on a 60 s file) with 422 before any decode or model call;
- no module but ``options.py`` spells an option's value set (two or more of its values in one literal);
- no module but ``config.py`` reads an ``E2V_*`` variable.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui import options as opts
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.recognize import RecognizeOptions

SRC = Path(__file__).resolve().parents[1] / "emotion2vec_webui"

BAD = [
    ({"granularity": "word"}, "granularity"),
    ({"segmentation": "sentences"}, "segmentation"),
    ({"speakers": "many"}, "speakers"),
    ({"num_speakers": 99}, "num_speakers"),
    ({"num_speakers": 0}, "num_speakers"),
    ({"num_speakers": "two"}, "num_speakers"),
    ({"channels": "256"}, "channels"),
    ({"channels": "centre"}, "channels"),
    ({"audio_stream": 256}, "audio_stream"),
    ({"audio_stream": -1}, "audio_stream"),
    ({"extract_embedding": "maybe"}, "extract_embedding"),
    ({"transcribe": "perhaps"}, "transcribe"),
    ({"head": "../etc"}, "Head name"),
    ({"asr_model": "x" * 301}, "asr_model"),
]


@pytest.mark.parametrize(("fields", "named"), BAD)
def test_a_bad_option_is_refused_when_the_options_are_built(fields, named):
    with pytest.raises(E2VError) as err:
        RecognizeOptions(**fields)
    assert err.value.code == "bad_request"
    assert named in err.value.message and " / " in err.value.message  # English / 中文


def test_form_text_is_normalised_and_replace_checks_again():
    o = RecognizeOptions("FRAME", "0", " vad ", channels=" Left", audio_stream="2", speakers="Auto",
                         num_speakers="3", transcribe="yes", asr_model=" paraformer_zh ", head="")  # fmt: skip
    assert (o.granularity, o.extract_embedding, o.segmentation, o.channels, o.audio_stream) == ("frame", False, "vad",
                                                                                                 "left", 2)  # fmt: skip
    assert (o.speakers, o.num_speakers, o.transcribe, o.asr_model, o.head) == ("auto", 3, True, "paraformer_zh", None)
    assert RecognizeOptions(channels=7).channels == "7" and RecognizeOptions(channels="").channels == "mix"
    with pytest.raises(E2VError):
        dataclasses.replace(o, num_speakers=33)


def test_one_boolean_rule_empty_is_the_default():
    for text in ("1", "TRUE", "yes", "on"):
        assert opts.parse_bool(text, "f") is True
    for text in ("0", "false", "No", "off"):
        assert opts.parse_bool(text, "f", True) is False
    assert opts.parse_bool("", "f", True) is True and opts.parse_bool(None, "f") is False
    with pytest.raises(E2VError):
        opts.parse_bool("2", "f")


# -- the REST face: a bad option answers before any work ------------------------------------------------------
@pytest.fixture(scope="module")
def rest(tmp_path_factory, tiny_model_dir, engine):
    from fastapi.testclient import TestClient

    from emotion2vec_webui import app as server
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    out = tmp_path_factory.mktemp("options_rest")
    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=out, api_token=None)
    with TestClient(server.create_app(s, Service(s, engine))) as client:
        yield client


def _wav(seconds: float) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_num_speakers_99_on_a_60_s_file_is_422_before_any_decode_or_model_call(rest, monkeypatch):
    from emotion2vec_webui.runs import recognize
    calls = []
    real_decode = recognize.Recognition.decode
    monkeypatch.setattr(recognize.Recognition, "decode", lambda self, *a, **k: calls.append("decode")
                        or real_decode(self, *a, **k))  # fmt: skip
    real_finish = recognize.Recognition.finish
    monkeypatch.setattr(recognize.Recognition, "finish", lambda self, *a, **k: calls.append("finish")
                        or real_finish(self, *a, **k))  # fmt: skip
    minute = _wav(60.0)
    for fields in ({"speakers": "auto", "num_speakers": "99"}, {"granularity": "words"}, {"channels": "300"},
                   {"audio_stream": "x"}, {"transcribe": "perhaps"}):  # fmt: skip
        t0 = time.perf_counter()
        r = rest.post("/api/v1/recognize", files={"file": ("minute.wav", minute, "audio/wav")}, data=fields)
        elapsed = time.perf_counter() - t0
        assert r.status_code == 422, (fields, r.text)
        assert r.json()["error"]["code"] == "bad_request"
        assert next(iter(fields)) in r.json()["error"]["message"]
        assert elapsed < 1.0, (fields, elapsed)
    assert calls == []  # no decode, so no inference
    # the same route with good options does decode and classify (the counters can see work)
    r = rest.post("/api/v1/recognize", files={"file": ("one.wav", _wav(1.0), "audio/wav")},
                  data={"num_speakers": "", "extract_embedding": "", "granularity": "utterance"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert calls == ["decode", "finish"]


def test_json_body_options_are_checked_by_the_same_definition(rest):
    r = rest.post("/api/v1/recognize", json={"audio_base64": "AAAA", "num_speakers": 99})
    assert r.status_code == 422 and "num_speakers" in r.json()["error"]["message"]
    schema = rest.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/recognize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["granularity"]["enum"] == list(opts.GRANULARITY.values)
    assert body["properties"]["speakers"]["enum"] == list(opts.SPEAKERS.values)
    num = body["properties"]["num_speakers"]["anyOf"][0]
    assert (num["minimum"], num["maximum"]) == (opts.NUM_SPEAKERS.low, opts.NUM_SPEAKERS.high)


# -- the source scans --------------------------------------------------------------------------------------------
SPELLED_SETS = [opts.GRANULARITY, opts.SEGMENTATION, opts.SPEAKERS, opts.PRECISION, opts.HUB, opts.CHANNEL_NAMES]
# (module path, option name): a literal holding several of an option's values that is not that option's value set.
NOT_OPTION_SETS: set[tuple[str, str]] = {
    ("engine/conversation.py", "channels"),  # the speaker ids of a stereo call: left, right
    ("engine/engine.py", "precision"),  # which resolved modes autocast or have int8 graphs (engine logic)
    ("model/loading.py", "precision"),  # the same, for loading
    ("model/resolve.py", "hub"),  # the hub a hub id resolves on (E2V_HUB checked again where a model is resolved)
}


def option_value_sets(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, option, values) of each tuple/list/set literal holding two or more values of one option."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            continue
        strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        for option in SPELLED_SETS:
            hits = sorted(strings & set(option.values))
            if len(hits) >= 2:
                found.append((node.lineno, option.name, hits))
    return found


def test_option_values_are_spelled_only_in_options_py():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "options.py":
            continue
        for line, option, values in option_value_sets(ast.parse(path.read_text("utf-8"))):
            if (rel, option) not in NOT_OPTION_SETS:
                bad.append(f"{rel}:{line}: {option} values {values} spelled here; use emotion2vec_webui.options")
    assert not bad, "\n".join(bad)


def test_the_scan_sees_a_spelled_set():
    tree = ast.parse('CHOICES = ["utterance", "frame"]\nif x in ("none", "auto"): pass\nok = ("utterance",)')
    assert [(o, v) for _, o, v in option_value_sets(tree)] == [("granularity", ["frame", "utterance"]),
                                                               ("speakers", ["auto", "none"])]  # fmt: skip


def e2v_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of each ``os.environ[...]``/``.get(...)``/``os.getenv(...)``/``in os.environ`` of an E2V_ name."""
    found = []

    def e2v(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("E2V_"):
            return node.value
        if isinstance(node, ast.JoinedStr) and node.values and e2v(node.values[0]):
            return e2v(node.values[0])
        return None

    def environ(node) -> bool:  # os.environ, environ, env (what load_settings calls it), os.environ.copy()
        if isinstance(node, ast.Call):
            node = node.func.value if isinstance(node.func, ast.Attribute) else node.func
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id in ("environ", "env"))  # fmt: skip

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and e2v(node.args[0]):
            f = node.func
            if (isinstance(f, ast.Attribute) and (f.attr == "getenv" or (f.attr in ("get", "pop", "setdefault")
                                                                          and environ(f.value)))) or (
                    isinstance(f, ast.Name) and f.id == "getenv"):  # fmt: skip
                found.append((node.lineno, e2v(node.args[0])))
        elif isinstance(node, ast.Subscript) and e2v(node.slice) and environ(node.value):
            found.append((node.lineno, e2v(node.slice)))
        elif isinstance(node, ast.Compare) and e2v(node.left) and any(
                isinstance(o, ast.In) for o in node.ops) and any(environ(c) for c in node.comparators):  # fmt: skip
            found.append((node.lineno, e2v(node.left)))
    return found


def test_e2v_variables_are_read_only_in_config_py():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "config.py":
            continue
        bad += [f"{rel}:{line}: reads {name}" for line, name in e2v_reads(ast.parse(path.read_text("utf-8")))]
    assert not bad, "E2V_* settings are read in config.py only (docs/settings.md):\n" + "\n".join(bad)


def test_the_env_scan_sees_a_read():
    tree = ast.parse('import os\na = os.environ.get("E2V_X")\nb = os.getenv("E2V_Y", "")\nc = os.environ["E2V_Z"]\n'
                     'd = "E2V_W" in os.environ\ne = os.environ.get("HOME")\nf = env.get(f"E2V_{k}")\n'
                     'g = "E2V_MODEL" in message\nh = d.get("E2V_NOT_ENV")')  # fmt: skip
    assert sorted(n for _, n in e2v_reads(tree)) == ["E2V_", "E2V_W", "E2V_X", "E2V_Y", "E2V_Z"]


# -- the Gradio scripting endpoint takes REST's options, checked before the service is called ---------------------
class _Service:
    def __init__(self):
        self.calls = []

    def recognize(self, source, source_name=None, options=None, progress=None):
        self.calls.append((source, options))
        run = type("Run", (), {"run_id": "r1"})()
        return type("Outcome", (), {"result": {"emotion": "happy"}, "run": run})()


def test_gradio_recognize_endpoint_takes_channels_and_head_and_checks_first(tmp_path):
    from emotion2vec_webui.ui import handlers

    service = _Service()
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF")
    out = handlers.recognize_api(service, str(clip), "frame", False, "vad", channels="right", head="myhead")
    assert out == {"emotion": "happy", "run_id": "r1"}
    options = service.calls[0][1]
    assert (options.granularity, options.segmentation, options.channels, options.head) == ("frame", "vad", "right",
                                                                                            "myhead")  # fmt: skip
    for bad in ({"channels": "999"}, {"head": "../x"}, {"segmentation": "words"}):
        with pytest.raises(E2VError) as err:
            handlers.recognize_api(service, str(clip), **{"granularity": "utterance", **bad})
        assert err.value.code == "bad_request"
    with pytest.raises(E2VError):  # neither a file nor a URL
        handlers.recognize_api(service, None, audio_url="  ")
    assert len(service.calls) == 1


def test_named_model_lists_agree_with_options():
    from emotion2vec_webui.cli.main import build_parser
    from emotion2vec_webui.model.conversation_models import ASR_MODEL_IDS
    from emotion2vec_webui.model.resolve import HUB_NAMES

    assert tuple(ASR_MODEL_IDS) == opts.ASR_MODEL_NAMES and set(opts.HUB.values) <= set(HUB_NAMES)
    parser = build_parser()
    args = parser.parse_args(["make-test-model", "d", "--kind", "paraformer-zh"])  # the old spelling, still taken
    assert args.kind == "paraformer_zh" and args.kind in opts.ASR_MODEL_NAMES
    old = parser.parse_args(["recognize", "a.wav", "--segments", "vad", "--no-embedding"])
    new = parser.parse_args(["recognize", "a.wav", "--segmentation", "vad", "--no-extract-embedding"])
    assert (old.segmentation, old.embedding) == (new.segmentation, new.embedding) == ("vad", False)
    for command in ("export", "bench"):  # --hub/--precision spelled as every command spells them
        assert parser.parse_args([command, *(["o"] if command == "export" else []), "--hub", "hf"]).hub == "hf"
