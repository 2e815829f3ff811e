"""The CLI end to end, as a user runs it.

Real subprocesses where the process itself is under test (``--help``'s speed with no
heavy import, the exit code of a failed model load); the rest calls the entry point
in-process (``cli.main.main(argv)``, what ``python -m emotion2vec_webui`` runs), which
saves a torch/FunASR import per test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

from emotion2vec_webui.audio.signals import extension, tone, write_audio
from emotion2vec_webui.cli.main import main
from tests.spec_check import check_result


def run_cli(*args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "emotion2vec_webui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_main(capsys, monkeypatch, *args, env=None) -> SimpleNamespace:
    """``main(args)`` in this process, with ``env`` set for the call: its exit code, stdout and stderr."""
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_help_is_fast_and_lists_every_command():
    t0 = time.monotonic()
    p = run_cli("--help")
    elapsed = time.monotonic() - t0
    assert p.returncode == 0
    for cmd in ("serve", "recognize", "batch", "similarity", "bench", "make-test-model"):
        assert cmd in p.stdout
    assert "torch" not in sys.modules or elapsed < 30  # heavy imports stay out of --help
    print(f"--help took {elapsed:.2f} s")


def test_recognize_many_formats_good_and_bad(tmp_path, tiny_model_dir, capsys, monkeypatch):
    files = []
    for fmt, rate, ch in [("mp3", 44100, 2), ("wav", 8000, 1), ("flac", 48000, 6), ("ogg", 22050, 2),
                          ("opus", 48000, 1), ("m4a", 16000, 2), ("webm", 48000, 2)]:
        files.append(write_audio(tmp_path / f"clip_{fmt}.{extension(fmt)}", tone(1.2, rate, channels=ch), rate, fmt))
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    text = tmp_path / "text.wav"
    text.write_text("this is not audio")
    nan = tone(1.0, 16000)[:, 0].copy()
    nan[10] = np.nan
    nan_wav = write_audio(tmp_path / "nan.wav", nan, 16000, "wavf32")
    order = [files[0], zero, files[1], text, nan_wav, *files[2:]]
    out_dir = tmp_path / "outputs"
    p = run_main(
        capsys, monkeypatch,
        "recognize", *map(str, order), "--granularity", "frame", "--json", "--output-dir", str(out_dir),
        env={"E2V_MODEL": str(tiny_model_dir)},
    )
    assert p.returncode == 2, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert [r["audio"]["source_name"] for r in lines] == [f.name for f in files]
    for r in lines:
        check_result(r, "frame")
        folder = out_dir / r["run_id"]
        assert sorted(os.listdir(folder)) == ["embedding.npy", "frames.csv", "processed_audio.wav", "result.json", "run.log"]
    assert len([n for n in os.listdir(out_dir) if not n.startswith(".")]) == len(files)  # no folder for the bad ones (.catalog.sqlite3: the run catalog)
    for name, code in [("zero.wav", "audio_empty"), ("text.wav", "audio_undecodable"), ("nan.wav", "audio_nonfinite")]:
        line = next(ln for ln in p.stderr.splitlines() if ln.startswith(str(tmp_path / name)))
        assert code in line


def test_plain_output_and_no_embedding(tmp_path, tiny_model_dir, capsys, monkeypatch):
    wav = write_audio(tmp_path / "a.wav", tone(1.0, 16000), 16000, "wav")
    p = run_main(capsys, monkeypatch, "recognize", str(wav), "--no-embedding", "--output-dir", str(tmp_path / "o"),
                 env={"E2V_MODEL": str(tiny_model_dir)})
    assert p.returncode == 0, p.stderr
    assert "a.wav" in p.stdout and "outputs_" in p.stdout
    (run,) = [p for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")]  # beside it: .catalog.sqlite3
    assert not (run / "embedding.npy").exists()
    assert json.loads((run / "result.json").read_text())["embedding"] is None


def test_model_unavailable_is_quick_and_clear(tmp_path):
    wav = write_audio(tmp_path / "a.wav", tone(1.0, 16000), 16000, "wav")
    env = {
        "E2V_MODEL": "emotion2vec_plus_large",
        "MODELSCOPE_CACHE": str(tmp_path / "ms"),
        "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
    }
    t0 = time.monotonic()
    p = run_cli("recognize", str(wav), "--output-dir", str(tmp_path / "o"), env=env)
    elapsed = time.monotonic() - t0
    assert p.returncode == 3
    assert "model_unavailable" in p.stderr and "make-test-model" in p.stderr
    print(f"model_unavailable after {elapsed:.1f} s")


def test_make_test_model_command(tmp_path, capsys, monkeypatch):
    p = run_main(capsys, monkeypatch, "make-test-model", str(tmp_path / "m"), "--size", "tiny", "--seed", "3")
    assert p.returncode == 0, p.stderr
    assert "random-weight tiny model" in p.stdout
    assert (tmp_path / "m" / "model.pt").is_file()


def test_stream_takes_recognizes_confidence_flags_into_its_start_message(capsys, monkeypatch):
    from emotion2vec_webui.cli.main import build_parser
    from emotion2vec_webui.cli.stream import describe, start_message
    from emotion2vec_webui.runs.live.stream_options import StreamOptions

    flags = ["--calibration", "sharp", "--min-confidence", "0.4"]
    stream_args = build_parser().parse_args(["stream", "take.wav", *flags])
    recognize_args = build_parser().parse_args(["recognize", "take.wav", *flags])
    options = StreamOptions.from_message(start_message(stream_args))  # what the server checks
    assert (options.calibration, options.min_confidence) == (recognize_args.calibration,
                                                             recognize_args.min_confidence) == ("sharp", 0.4)  # fmt: skip
    plain = start_message(build_parser().parse_args(["stream", "take.wav"]))
    assert "calibration" not in plain and "min_confidence" not in plain
    bad = run_main(capsys, monkeypatch, "stream", "take.wav", "--min-confidence", "1.5")  # refused before connecting
    assert bad.returncode == 2 and "min-confidence" in bad.stderr and " / " in bad.stderr
    line = describe({"type": "interval", "index": 1, "start_s": 0.0, "end_s": 1.0, "emotion": "sad", "emotion_zh": "难过",
                     "confidence": 0.31, "scores": {}, "head": None, "uncertain": True})  # fmt: skip
    assert "uncertain / 不确定 (sad 难过 0.31)" in line
