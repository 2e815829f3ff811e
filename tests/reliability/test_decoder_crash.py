"""Files that used to crash the decoder (PyAV on planar audio with 8+ channels), and the guard around it.

The multichannel files are generated here with ffmpeg (skipped when it is
missing): 8-channel Opus (libopus' surround mapping), 9/12/16/32/64-channel
Opus (mapping family 255: libopus takes up to 255 channels that way), 7.1 AAC
in m4a, 7.1 Opus in Ogg and in WebM. Each must come back as a 200 or a typed
4xx, with the server alive. A file whose bytes start with ``E2V-TEST:segv``
makes a decode worker kill itself with SIGSEGV (the test hook of
decoder_pool, on in the reliability server): that one file fails with
``audio_undecodable`` and everything else goes on, in the REST API, the CLI
and a batch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.decoder_pool import _TEST_HOOK_ENV, DecoderPool, PoolConfig
from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.errors import ERROR_CODES, AudioError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
CRASH = b"E2V-TEST:segv\n" + b"\0" * 64  # the worker's test hook: SIGSEGV itself on these bytes

# name → (channels, ffmpeg output arguments)
MULTICHANNEL = {
    "opus8.opus": (8, ["-c:a", "libopus"]),
    **{f"opus{n}.opus": (n, ["-c:a", "libopus", "-mapping_family", "255"]) for n in (9, 12, 16, 32, 64)},
    "aac71.m4a": (8, ["-c:a", "aac", "-channel_layout", "7.1"]),
    "opus71.ogg": (8, ["-c:a", "libopus", "-channel_layout", "7.1"]),
    "opus71.webm": (8, ["-c:a", "libopus", "-channel_layout", "7.1"]),
}


@pytest.fixture(scope="module")
def multichannel(tmp_path_factory) -> dict[str, Path]:
    """The files of MULTICHANNEL, 0.6 s each (a tone on every channel), made with ffmpeg from a float wav."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("multichannel")
    out = {}
    for name, (channels, codec) in MULTICHANNEL.items():
        wav = folder / f"src{channels}.wav"
        if not wav.exists():
            x = tone(0.6, 48000)[:, 0]
            sf.write(wav, np.repeat(x[:, None], channels, axis=1), 48000, subtype="FLOAT")
        path = folder / name
        done = subprocess.run(
            [FFMPEG, "-v", "error", "-y", "-i", str(wav), "-b:a", f"{16 * channels}k", *codec, str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and path.stat().st_size > 0, f"ffmpeg could not make {name}: {done.stderr}"
        out[name] = path
    return out


def _probe_in_subprocess(path: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys; from emotion2vec_webui.audio.decode import decode_audio; d = decode_audio(sys.argv[1]); "
        "print(d.original_channels, round(d.duration_s, 2))"
    )
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)


@needs_ffmpeg
def test_multichannel_files_decode_in_process(multichannel):
    """The in-process fix: every file decodes (run in a subprocess, so a regression is a failure, not a crash)."""
    for name, path in multichannel.items():
        done = _probe_in_subprocess(path)
        assert done.returncode == 0, f"{name}: exit {done.returncode} {done.stderr[-400:]}"
        channels, seconds = done.stdout.split()
        assert int(channels) == MULTICHANNEL[name][0], name
        assert 0.55 <= float(seconds) <= 0.7, (name, seconds)


def _check_typed(r: httpx.Response, name: str) -> None:
    if r.status_code == 200:
        return
    assert 400 <= r.status_code < 500, f"{name}: {r.status_code} {r.text[:300]}"
    assert r.json()["error"]["code"] in ERROR_CODES, (name, r.text[:300])


@needs_ffmpeg
def test_multichannel_uploads_get_an_answer_and_the_server_lives(reliability_server, multichannel):
    from tests.reliability.conftest import MAX_DURATION_S

    budget = MAX_DURATION_S * 48000 * 2  # input samples the server decodes at most (48 kHz stereo's worth)
    with httpx.Client(base_url=reliability_server.url, timeout=60) as client:
        for name, path in multichannel.items():
            r = client.post("/api/v1/recognize", files={"file": (name, path.read_bytes())})
            _check_typed(r, name)
            if MULTICHANNEL[name][0] * 0.6 * 48000 > budget:  # 32 and 64 channels: over the input-sample budget
                assert r.json()["error"]["code"] == "audio_too_long", f"{name}: {r.text[:300]}"
                continue
            assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:300]}"  # decoded, not just survived
            assert client.get("/healthz").status_code == 200, f"the server died on {name}"


def test_a_decoder_crash_or_memory_blowup_is_one_typed_error_and_the_server_goes_on(reliability_server, tone_wav):
    with httpx.Client(base_url=reliability_server.url, timeout=60) as client:
        for _ in range(2):  # the replacement worker crashes too, and is replaced again
            r = client.post("/api/v1/recognize", files={"file": ("bad.opus", CRASH)})
            assert r.status_code == 415, r.text[:300]
            error = r.json()["error"]
            assert error["code"] == "audio_undecodable" and "decoder crashed" in error["message"], error
            assert "SIGSEGV" in error["message"]
            assert client.get("/healthz").status_code == 200
        r = client.post("/api/v1/recognize", files={"file": ("big.flac", b"E2V-TEST:alloc")})  # over RLIMIT_AS
        assert r.status_code == 422 and r.json()["error"]["code"] == "audio_too_large_decoded", r.text[:300]
        r = client.post("/api/v1/recognize", files={"file": ("good.wav", Path(tone_wav).read_bytes())})
        assert r.status_code == 200, r.text[:300]


# -- the pool itself ------------------------------------------------------------------------------


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setenv(_TEST_HOOK_ENV, "1")  # inherited by the spawned workers
    p = DecoderPool(PoolConfig(workers=1, timeout_s=2.0))
    yield p
    p.shutdown()


@pytest.mark.parametrize("action", [b"segv", b"kill"])
def test_a_worker_that_dies_mid_job_fails_that_job_only(pool, tone_wav, action):
    want = decode_audio(tone_wav)
    assert np.array_equal(pool.decode(tone_wav).waveform, want.waveform)  # a worker exists and works
    with pytest.raises(AudioError) as err:
        pool.decode(b"E2V-TEST:" + action, source_name="x.opus")
    assert err.value.code == "audio_undecodable" and "the decoder crashed" in err.value.message
    assert {b"segv": "SIGSEGV", b"kill": "SIGKILL"}[action] in err.value.message
    assert pool.replaced == 1
    again = pool.decode(Path(tone_wav).read_bytes(), source_name="t.wav")  # a fresh worker takes the next job
    assert np.array_equal(again.waveform, want.waveform) and again.source_name == "t.wav"


def test_a_hung_decode_is_killed_at_the_timeout(pool, tone_wav):
    with pytest.raises(AudioError) as err:
        pool.decode(b"E2V-TEST:hang", source_name="slow.m4a")
    assert err.value.code == "audio_too_large_decoded" and "E2V_DECODE_TIMEOUT_S" in err.value.message
    assert pool.replaced == 1
    assert pool.decode(tone_wav).duration_s > 0.5


def test_the_memory_limit_is_a_typed_error_and_the_worker_lives_on(pool, tone_wav):
    with pytest.raises(AudioError) as err:
        pool.decode(b"E2V-TEST:alloc", source_name="huge.flac")
    assert err.value.code == "audio_too_large_decoded" and "E2V_DECODE_MEMORY_MB" in err.value.message
    assert pool.replaced == 0  # a MemoryError is caught in the worker: no restart needed
    assert pool.decode(tone_wav).duration_s > 0.5


def test_a_real_file_over_a_small_memory_allowance_is_refused(monkeypatch, tmp_path):
    """E2V_DECODE_MEMORY_MB bounds what a decode may add: 8 MB cannot hold 60 s at 16 kHz (3.8 MB) twice over."""
    path = write_audio(tmp_path / "long.flac", tone(60.0, 16000), 16000, "flac")
    p = DecoderPool(PoolConfig(workers=1, timeout_s=30.0, memory_mb=8))
    try:
        with pytest.raises(AudioError) as err:
            p.decode(path)
        assert err.value.code == "audio_too_large_decoded"
    finally:
        p.shutdown()


def test_concurrent_callers_share_the_workers(tone_wav):
    from concurrent.futures import ThreadPoolExecutor

    p = DecoderPool(PoolConfig(workers=2, timeout_s=30.0))
    try:
        with ThreadPoolExecutor(6) as ex:
            got = list(ex.map(lambda _: p.decode(tone_wav).duration_s, range(12)))
        assert len(set(got)) == 1 and got[0] > 0.5
        assert len(p.worker_pids()) <= 2
    finally:
        p.shutdown()


# -- the CLI and batch ----------------------------------------------------------------------------


def _run(args: list[str], env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, _TEST_HOOK_ENV: "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "emotion2vec_webui", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, multichannel) -> Path:
    """good.wav, good2.flac, two multichannel files and one that crashes its decoder."""
    folder = tmp_path_factory.mktemp("mixed")
    write_audio(folder / "good.wav", tone(1.0, 16000), 16000, "wav")
    write_audio(folder / "good2.flac", tone(1.2, 44100, channels=2), 44100, "flac")
    (folder / "bad.opus").write_bytes(CRASH)
    for name in ("opus12.opus", "aac71.m4a"):
        shutil.copy(multichannel[name], folder / name)
    return folder


@needs_ffmpeg
def test_cli_recognize_goes_on_past_a_crashing_file(mixed_folder, tiny_model_dir, tmp_path):
    files = [mixed_folder / n for n in ("good.wav", "bad.opus", "opus12.opus", "good2.flac")]
    out = tmp_path / "out"
    done = _run(["recognize", *map(str, files), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--output-dir", str(out)])  # fmt: skip
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-800:]}"
    assert "bad.opus" in done.stderr and "the decoder crashed" in done.stderr and "[audio_undecodable]" in done.stderr
    runs = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = sorted(json.loads((r / "result.json").read_text())["audio"]["source_name"] for r in runs)
    assert names == ["good.wav", "good2.flac", "opus12.opus"], names


@needs_ffmpeg
def test_batch_makes_the_crash_an_error_row_and_resume_finishes(mixed_folder, tiny_model_dir, tmp_path):
    batch_dir = tmp_path / "b"
    args = ["batch", str(mixed_folder), "--model", str(tiny_model_dir), "--device", "cpu", "--batch-dir",
            str(batch_dir)]  # fmt: skip
    first = _run(args)
    assert first.returncode == 1, f"exit {first.returncode}: {first.stderr[-800:]}"
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in map(json.loads, (batch_dir / "summary.jsonl").open())}
    assert set(rows) == {"good.wav", "good2.flac", "bad.opus", "opus12.opus", "aac71.m4a"}
    assert rows["bad.opus"]["status"] == "error" and rows["bad.opus"]["error_code"] == "audio_undecodable"
    assert "decoder crashed" in rows["bad.opus"]["error_message"]
    assert all(r["status"] == "ok" for n, r in rows.items() if n != "bad.opus"), rows
    again = _run([*args, "--resume"])
    assert again.returncode == 1, f"exit {again.returncode}: {again.stderr[-800:]}"  # finished; bad.opus still bad
    final = [json.loads(line) for line in (batch_dir / "summary.jsonl").open()]
    assert len(final) == 5 and sum(r["status"] == "ok" for r in final) == 4
    assert (batch_dir / "summary.csv").exists()
