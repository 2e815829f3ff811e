"""Batch labels, names and times (issue 17): prefixed RAVDESS names, "no labels found", upload names, processing_s."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.jobs.batch import (
    BatchOptions,
    classify_group,
    finish_batch,
    format_report,
    open_batch,
    run_local,
)
from emotion2vec_webui.jobs.inputs import discover_inputs, label_from_filename

RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful"}
NO_LABELS = "no labels found (looked for: folder-per-label, CSV label column, RAVDESS/CREMA-D names)"


def _clip(path: Path, i: int, seconds: float = 1.0) -> Path:
    audio = tone(seconds, 16000, freq=150 + 20 * i) if i % 2 else noise(seconds, 16000, seed=i)
    return write_audio(path, audio, 16000, "wav")


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory) -> Path:
    """20 clips named like ``ravdess_03-01-05-02-01-01-03.wav`` (and a few with a suffix too)."""
    folder = tmp_path_factory.mktemp("prefixed")
    codes = sorted(RAVDESS_CODES)
    for i in range(20):
        stem = f"ravdess_03-01-{codes[i % len(codes)]}-0{1 + i % 2}-01-01-{i + 1:02d}"
        _clip(folder / (stem + ("_take2" if i % 5 == 0 else "") + ".wav"), i)
    return folder


def _run(items, folder: Path, settings, engine, options: BatchOptions):
    summary, todo = open_batch(items, folder, resume=False, manifest={})
    s = dataclasses.replace(settings, output_dir=summary.folder)
    audio_s = run_local(todo, summary, s, options, lambda pairs: classify_group(engine, pairs, s, options))
    summary.close()
    return finish_batch(summary, items, options, 0, audio_s, 1.0)


def test_label_patterns_anywhere_in_the_name():
    assert label_from_filename("ravdess_03-01-05-02-01-01-03.wav") == "angry"
    assert label_from_filename("x/03-01-02-01-01-01-12_copy.flac") == "calm"
    assert label_from_filename("crema_1001_DFA_ANG_XX.wav") == "angry"
    assert label_from_filename("1001_DFA_SAD_XX-denoised.wav") == "sad"
    assert label_from_filename("103-01-05-02-01-01-03.wav") is None  # digits run on: not the pattern
    assert label_from_filename("meeting_2024-01-05.wav") is None


def test_folder_per_label(tmp_path):
    for i, name in enumerate(["angry/a.wav", "Happy/b.wav", "misc/c.wav", "d.wav"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        _clip(tmp_path / name, i, 0.5)
    labels = {Path(it.file).name: it.label for it in discover_inputs(tmp_path)}
    assert labels == {"a.wav": "angry", "b.wav": "Happy", "c.wav": None, "d.wav": None}


def test_prefixed_ravdess_names_give_metrics(prefixed, engine, settings, tmp_path):
    items = discover_inputs(prefixed)
    assert len(items) == 20 and all(it.label for it in items)
    report = _run(items, tmp_path / "batch", settings, engine, BatchOptions(batch_size=4, workers=2))
    assert report.failed == 0 and report.labelled == 20
    assert report.metrics is not None and report.metrics.count == 20
    metrics = json.loads((report.folder / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["weighted_f1"] <= 1
    assert sum(map(sum, metrics["confusion"])) == 20
    assert metrics["label_mapping_applied"] == {"calm": "neutral"}
    assert (report.folder / "confusion_matrix.png").stat().st_size > 1000
    text = format_report(report)
    assert "accuracy" in text and "准确率" in text and NO_LABELS not in text
    # RAVDESS calm is not silently neutral: the report says so and how to change it
    calm = sum(it.label == "calm" for it in items)
    assert f"label 'calm' counted as 'neutral' (RAVDESS calm has no class of its own): {calm} inputs" in text
    assert "--label-map 'calm=<class>'" in text


def test_unlabelled_folder_says_no_labels_found(engine, settings, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        _clip(folder / f"clip{i}.wav", i, 0.6)
    report = _run(discover_inputs(folder), tmp_path / "batch", settings, engine, BatchOptions())
    assert report.metrics is None and not (report.folder / "metrics.json").exists()
    text = format_report(report)
    assert NO_LABELS in text and NO_LABELS in (report.folder / "report.txt").read_text()
    assert "未找到标签（查找了：按标签分文件夹、CSV 的 label 列、RAVDESS/CREMA-D 文件名）" in text


_STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) ")


def test_processing_time_is_the_runs_own_and_times_differ(prefixed, engine, settings, tmp_path):
    """processing_s = decode (worker round trip) + inference + assembly: at least run.log's decode and inference
    figures, and no more than the run's own span in run.log (from its first line to its "processing time" line),
    so no other run's time and no queueing before it is counted. Bounds from the run's own clock, not a ratio:
    the assembly's share varies with the machine's load."""
    items = discover_inputs(prefixed)[:8]
    report = _run(items, tmp_path / "batch", settings, engine, BatchOptions(batch_size=4, workers=2))
    for row in report.rows:
        run = report.folder / row["run_folder"]
        log_text = (run / "run.log").read_text()
        decode_ms = float(re.search(r"in [\d.]+ ms \(([\d.]+) ms with the worker round trip\)", log_text).group(1))
        inference_ms = float(re.search(r"inference: ([\d.]+) ms", log_text).group(1))
        logged = float(re.search(r"processing time ([\d.]+) s", log_text).group(1))
        result = json.loads((run / "result.json").read_text())
        assert row["processing_s"] == result["processing_time_s"]
        parts = (decode_ms + inference_ms) / 1000
        stamps = [m.group(1) for line in log_text.splitlines() if (m := _STAMP.match(line))]
        assert len(stamps) == len(log_text.splitlines()) and len(set(stamps)) > 1, log_text
        lines = log_text.splitlines()
        done = next(i for i, line in enumerate(lines) if "processing time" in line)
        span = (_seconds(stamps[done]) - _seconds(stamps[0])) % 86400  # a run across midnight
        # run.log rounds each figure to 0.1 ms, its stamps to 1 ms and result.json to 0.1 ms: allow that rounding.
        assert parts - 0.0002 <= result["processing_time_s"] <= span + 0.0022, (parts, span, result["processing_time_s"])
        assert abs(logged - result["processing_time_s"]) < 0.0011


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_ui_summary_names_uploads_by_their_original_names(engine, settings, tmp_path):
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import LABEL_HEADERS, TABLE_HEADERS, run_ui_batch

    uploads = []
    for i, name in enumerate(["interview one.wav", "ravdess_03-01-05-02-01-01-03.wav"]):
        path = tmp_path / ".gradio-tmp" / f"2f9fe{i}abc" / name  # how Gradio stores an upload
        path.parent.mkdir(parents=True)
        uploads.append(str(_clip(path, i, 0.6)))
    service = Service(settings, engine)
    service.start()
    try:
        html, frame, csv_path, _zip, matrix, _head = run_ui_batch(service, uploads, "", "utterance", False)
    finally:
        service.stop()
    lines = Path(csv_path).read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["interview one.wav", "ravdess_03-01-05-02-01-01-03.wav"]
    assert ".gradio-tmp" not in Path(csv_path).read_text()
    assert "准确率" in html and matrix
    assert list(frame.columns) == TABLE_HEADERS + LABEL_HEADERS
    assert list(frame.iloc[:, -2]) == ["", "angry"] and frame.iloc[0, -1] == "" and frame.iloc[1, -1] in ("✓", "✗")


def test_list_labels_are_cleaned_and_summary_cells_never_start_a_formula(tmp_path):
    """Issue 26: a list file's label loses control and bidi characters; summary.csv quotes formula-like cells."""
    import csv
    import io

    from emotion2vec_webui.jobs.inputs import read_list_file
    from emotion2vec_webui.jobs.summary import summary_csv

    lst = tmp_path / "list.csv"
    lst.write_text('path,label\n"=a.wav","=cmd\x1b|\u202e calc"\n', "utf-8")
    [item] = read_list_file(lst)
    assert item.label == "=cmd| calc"
    row = {"file": "=a.wav", "label": item.label, "status": "error", "confidence": -0.5, "duration_s": "-1.5",
           "error_code": "bad_request", "error_message": "+x / 中文", "head_label": "@h"}  # fmt: skip
    [out] = list(csv.DictReader(io.StringIO(summary_csv([row]))))
    assert (out["file"], out["label"], out["error_message"], out["head_label"]) == ("'=a.wav", "'=cmd| calc", "'+x / 中文", "'@h")
    assert (out["confidence"], out["duration_s"], out["status"]) == ("-0.5", "-1.5", "error")  # numbers stay numbers
