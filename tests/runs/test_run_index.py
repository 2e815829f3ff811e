"""The run catalog (issue 30): rows written with the run, repaired from the folders, shared by threads and processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.catalog import run_query, run_stats
from emotion2vec_webui.runs.catalog.folders import BATCH_MANIFEST, batch_run_id
from emotion2vec_webui.runs.catalog.run_index import (
    CATALOG_FILE,
    SCHEMA_VERSION,
    RunIndex,
    catalog_for,
)
from emotion2vec_webui.runs.storage import RUN_ID_RE
from tests.catalog_data import T0, result, write_single


def _rows(root: Path) -> list[str]:
    with sqlite3.connect(root / CATALOG_FILE) as conn:
        return sorted(r[0] for r in conn.execute("SELECT run_id FROM runs"))


def _folders(root: Path) -> list[str]:
    out = [p.name for p in root.iterdir() if RUN_ID_RE.match(p.name)]
    for batch in (p for p in root.iterdir() if (p / BATCH_MANIFEST).is_file()):
        out += [batch_run_id(batch.name, p.name) for p in batch.iterdir() if RUN_ID_RE.match(p.name)]
    return sorted(out)


def test_a_recognition_writes_its_row_with_what_people_search_by(settings, engine, speech_wav):
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    options = RecognizeOptions(extract_embedding=False)
    outcome = Recognition(settings, options, request_id="rq-1").run(speech_wav, lambda fn: fn(engine), "meeting 1.wav")
    (row,) = run_query.list_runs(catalog_for(settings.output_dir)).runs  # no sync: the flow wrote the row
    result = outcome.result
    assert row["run_id"] == outcome.run.run_id and row["kind"] == "single" and row["batch"] is None
    assert (row["source_name"], row["emotion"], row["confidence"]) == ("meeting 1.wav", result["emotion"], result["confidence"])
    assert (row["granularity"], row["duration_s"], row["request_id"]) == ("utterance", result["audio"]["duration_s"], "rq-1")
    assert row["timestamp"] == result["timestamp"] and row["speakers"] == [] and row["label"] is None


def test_killed_between_rename_and_row_the_run_is_listed_after_a_sync(tmp_path):
    root = tmp_path / "outputs"
    first = write_single(root, 0, "before.wav")
    # A process writes a run folder (the atomic rename) and is killed with SIGKILL before its catalog row.
    code = (
        "import os, signal, sys, numpy as np\n"
        "from emotion2vec_webui.runs.storage import write_run\n"
        f"write_run(sys.argv[1], {result(1, 'killed.wav')!r}, np.zeros(160, np.float32), None, '')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
        "from emotion2vec_webui.runs.catalog.run_index import record_run_folder  # never reached\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    killed = [f for f in _folders(root) if f != first]
    assert len(killed) == 1 and _rows(root) == [first]  # the folder landed, its row did not
    report = RunIndex(root).sync()  # what serve does at start (a fresh process: a new RunIndex)
    assert report.added == 1 and _rows(root) == sorted([first, *killed])
    page = run_query.list_runs(catalog_for(root))
    assert {r["source_name"] for r in page.runs} == {"before.wav", "killed.wav"}


def test_a_folder_deleted_by_hand_disappears_and_a_new_one_appears(tmp_path):
    root = tmp_path / "outputs"
    ids = [write_single(root, i, f"f{i}.wav") for i in range(4)]
    shutil.rmtree(root / ids[1])
    (root / ids[1]).parent.joinpath("unrelated").mkdir()  # not a run folder: ignored
    shutil.copytree(root / ids[0], root / "outputs_20261201_090000")  # copied in by hand
    report = catalog_for(root).sync()
    assert (report.added, report.removed) == (1, 1)
    assert _rows(root) == sorted([ids[0], ids[2], ids[3], "outputs_20261201_090000"])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_catalog_is_replaced_and_rebuilt(tmp_path, damage):
    root = tmp_path / "outputs"
    ids = [write_single(root, i, f"f{i}.wav") for i in range(30)]
    path = root / CATALOG_FILE
    RunIndex(root).connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # a sound header, pages cut off and overwritten: SQLite answers "database disk image is malformed"
        data = bytearray(path.read_bytes())
        data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
        path.write_bytes(bytes(data[: 4096 * 3]))
    index = RunIndex(root)  # a fresh process finds it so
    report = index.sync(check=True)
    assert report.rebuilt and report.runs == 30 and _rows(root) == sorted(ids)
    assert (root / (CATALOG_FILE + ".corrupt")).is_file()  # kept for a look
    assert run_query.list_runs(index, run_query.make_filter(emotion="happy")).total == 15


def test_corruption_found_by_a_query_is_rebuilt_in_the_background(tmp_path):
    root = tmp_path / "outputs"
    ids = [write_single(root, i, f"f{i}.wav") for i in range(12)]
    catalog_for(root).connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(root / CATALOG_FILE, "r+b") as f:  # damaged while servers run: same file, new bytes
        f.write(b"not sqlite" * 20)
    index = RunIndex(root)  # another process's first query (no start-up check there) meets it
    page = run_query.list_runs(index)  # answers (from an empty catalog) instead of failing
    assert page.total <= 12
    deadline = time.monotonic() + 30
    while run_query.list_runs(index).total < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(root) == sorted(ids)


def test_another_schema_version_is_rebuilt(tmp_path):
    root = tmp_path / "outputs"
    ids = [write_single(root, i, f"f{i}.wav") for i in range(3)]
    with sqlite3.connect(root / CATALOG_FILE) as conn:
        conn.execute("DROP TABLE runs")
        conn.execute("CREATE TABLE runs (run_id TEXT)")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    report = RunIndex(root).sync()
    assert report.rebuilt and _rows(root) == sorted(ids)


def test_speaker_renames_and_conversation_turns_reach_the_catalog(tmp_path):
    from emotion2vec_webui.runs.speaker_names import rename_speakers

    root = tmp_path / "outputs"
    scores = {k: 1.0 if k == "happy" else 0.0 for k in EMOTIONS}
    turns = [{"index": i, "speaker": "left" if i % 2 == 0 else "right", "start_s": i, "end_s": i + 0.9,
              "emotion": "angry" if i % 2 else "happy", "emotion_zh": "", "confidence": 0.7, "scores": scores}
             for i in range(5)]  # fmt: skip
    speakers = [{"id": s, "label": s, "channel": c, "turns": n, "speaking_s": 2.0, "speaking_share": 0.5,
                 "emotion_share": {}, "dominant_emotion": "happy", "most_negative_turns": []}
                for c, (s, n) in enumerate((("left", 3), ("right", 2)))]  # fmt: skip
    run_id = write_single(root, 0, "call.wav", speakers=speakers, turns=turns)
    index = catalog_for(root)
    rename_speakers(root / run_id, {"left": "Agent"})
    (row,) = run_query.list_runs(index, run_query.make_filter(speaker="agent")).runs
    assert row["run_id"] == run_id and row["conversation"] and row["speakers"] == ["Agent", "right"]
    assert run_query.list_runs(index, run_query.make_filter(speaker="left")).total == 1  # the id still finds it
    assert run_query.list_runs(index, run_query.make_filter(kind="conversation")).total == 1
    by_speaker = {g["speaker"]: g["emotions"] for g in run_stats.stats(index)["by_speaker"]}
    assert by_speaker == {"Agent": {"happy": 3}, "right": {"angry": 2}}


def test_threads_and_a_batch_process_leave_every_run_once(tmp_path, tiny_model_dir):
    """Four threads write runs (and a start-up sync runs) while a `batch` process writes a labelled batch."""
    root = tmp_path / "outputs"
    clips = tmp_path / "clips"
    for i, name in enumerate(["happy/a.wav", "happy/b.wav", "sad/c.wav", "sad/d.wav", "angry/e.wav", "angry/f.wav"]):
        (clips / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(clips / name, tone(0.6, 16000, freq=200 + 40 * i) if i % 2 else noise(0.6, 16000, seed=i), 16000, "wav")
    env = {**os.environ, "E2V_MODEL": str(tiny_model_dir), "E2V_DEVICE": "cpu", "E2V_DECODE_WORKERS": "0"}
    batch = subprocess.Popen([sys.executable, "-m", "emotion2vec_webui", "batch", str(clips), "--output-dir", str(root),
                              "--batch-size", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(25):
                write_single(root, 1000 * k + i, f"thread{k}_{i}.wav")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=lambda: catalog_for(root).sync()))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, err = batch.communicate(timeout=300)
    assert batch.returncode == 0, err.decode()[-2000:]
    assert not errors, errors
    catalog_for(root).sync()  # nothing left to add: every writer recorded its rows
    rows, folders = _rows(root), _folders(root)
    assert rows == folders and len(folders) == 100 + 6 and len(set(rows)) == len(rows)
    (batch_id,) = {f.split("~")[0] for f in folders if "~" in f}
    detail = run_stats.batch_detail(catalog_for(root), batch_id)
    assert detail["state"] == "done" and detail["summary"]["runs"] == 6 and detail["labelled"] == 6
    assert detail["confusion_matrix"]["matrix"] and sum(map(sum, detail["confusion_matrix"]["matrix"])) == 6
    labels = {r["source_name"]: r["label"] for r in run_query.list_runs(catalog_for(root), run_query.make_filter(batch=batch_id)).runs}
    assert labels == {"a.wav": "happy", "b.wav": "happy", "c.wav": "sad", "d.wav": "sad", "e.wav": "angry", "f.wav": "angry"}


def test_filters_and_cursor_pages_on_a_hand_built_set(tmp_path):
    root = tmp_path / "outputs"
    singles = [write_single(root, i, f"{'Meeting' if i % 3 == 0 else 'call'}_{i}.wav") for i in range(10)]
    folder = root / "batch_20261201_100100"
    folder.mkdir()
    (folder / BATCH_MANIFEST).write_text(json.dumps({"input": "/data/set"}))
    members = [batch_run_id(folder.name, write_single(folder, 60 + i, f"b{i}.wav", head={"name": "h", "label": "urgent" if i < 2 else "calm"}))
               for i in range(5)]  # fmt: skip
    index = catalog_for(root)
    everything = run_query.list_runs(index, limit=100)
    order = [r["run_id"] for r in everything.runs]
    assert order == members[::-1] + singles[::-1] and everything.total == 15 and everything.next_cursor is None
    pages, cursor = [], None
    while True:  # cursor pages of 4 cover the listing exactly once, in order
        page = run_query.list_runs(index, limit=4, cursor=cursor)
        pages += [r["run_id"] for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == order
    legacy = run_query.list_runs(index, limit=4, offset=4)
    assert [r["run_id"] for r in legacy.runs] == order[4:8]

    def ids(**kw) -> set[str]:
        return {r["run_id"] for r in run_query.list_runs(index, run_query.make_filter(**kw), limit=100).runs}

    assert ids(q="meeting") == {singles[i] for i in (0, 3, 6, 9)}  # case-insensitive, part of the name
    assert ids(q="ETING_") == {singles[i] for i in (0, 3, 6, 9)} and ids(q="g_9") == {singles[9]}
    assert ids(q="50%") == set() and ids(q="_") == set(singles)  # wildcards in the text are text (LIKE path)
    assert ids(q='" OR "') == set() and ids(q="b1") == {members[1]}  # quotes cannot change the query
    assert ids(emotion="happy") == {r for i, r in enumerate(singles) if i % 2} | {members[1], members[3]}
    assert ids(emotion="happy,sad") == set(order)
    assert ids(min_confidence=0.65) == {members[i] for i in range(0, 5) if 0.1 + 0.01 * (60 + i) >= 0.65}
    assert ids(batch=folder.name) == set(members) and ids(kind="batch") == set(members)
    assert ids(kind="single") == set(singles) and ids(kind="live") == set()
    assert ids(head_label="URGENT") == set(members[:2])
    since = (T0 + timedelta(seconds=5)).isoformat()
    until = (T0 + timedelta(seconds=8)).isoformat()
    assert ids(since=since, until=until) == set(singles[5:8])
    assert ids(since="2026-12-01", until="2026-12-01") == set(order) and ids(since="2026-12-02") == set()
    assert ids(q="call", emotion="sad", since=since) == {singles[8]}
    for bad in ({"emotion": "joy"}, {"kind": "odd"}, {"since": "yesterday"}, {"min_confidence": 2}):
        with pytest.raises(Exception) as info:
            run_query.make_filter(**bad)
        assert getattr(info.value, "code", "") == "bad_request"
    with pytest.raises(Exception) as info:
        run_query.list_runs(index, cursor="%%%")
    assert info.value.code == "bad_request"
    # totals are cached per filter until something is written, by this connection or another process
    assert run_query.list_runs(index, run_query.make_filter(q="meeting")).total == 4
    write_single(root, 20, "meeting_new.wav")
    assert run_query.list_runs(index, run_query.make_filter(q="meeting")).total == 5
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from tests.catalog_data import write_single; "
            "from pathlib import Path; write_single(Path(sys.argv[1]), 21, 'meeting_other.wav')")
    subprocess.run([sys.executable, "-c", code, str(root), str(Path(__file__).resolve().parents[2])], check=True)
    assert run_query.list_runs(index, run_query.make_filter(q="meeting")).total == 6


def test_search_finds_chinese_names_long_and_short(tmp_path):
    root = tmp_path / "outputs"
    ids = [write_single(root, 0, "客服会议录音_第一段.wav"), write_single(root, 1, "会议.wav"), write_single(root, 2, "other.wav")]
    index = catalog_for(root)

    def found(q: str) -> set[str]:
        return {r["run_id"] for r in run_query.list_runs(index, run_query.make_filter(q=q)).runs}

    assert found("会议录") == {ids[0]} and found("会议") == {ids[0], ids[1]} and found("第一段.WAV") == {ids[0]}


def test_kind_says_where_a_run_came_from():
    from emotion2vec_webui.runs.catalog.run_index import run_row

    def kind(batch=None, **audio) -> str:
        return run_row("r", "outputs_20261201_100000", batch, {"audio": {"source_name": "x", **audio}})[4]

    assert kind(container="wav") == "single" and kind(container="microphone") == "live"
    assert kind(container="stream") == "stream" and kind("batch_1", container="microphone") == "batch"
    assert run_row("r", "outputs_20261201_100000", None, None)[4] == "single"  # an unreadable result.json


def test_name_search_gives_the_same_page_either_way(tmp_path, monkeypatch):
    """Few matches start from the names, many walk the listing: both plans answer the same rows and totals."""
    root = tmp_path / "outputs"
    for i in range(40):
        write_single(root, i, f"{'meeting' if i % 3 else 'call'}_{i:03d}.wav")
    index = catalog_for(root)
    queries = [{"q": "meeting"}, {"q": "meeting", "emotion": "happy"}, {"q": "_01", "min_confidence": 0.2},
               {"q": "call_0"}, {"q": "nothing"}]  # fmt: skip

    def pages(flt) -> list:
        out, cursor = [], None
        while True:
            page = run_query.list_runs(index, flt, limit=7, cursor=cursor)
            out.append(([r["run_id"] for r in page.runs], page.total))
            if not (cursor := page.next_cursor):
                return out

    driven = [pages(run_query.make_filter(**q)) for q in queries]
    monkeypatch.setattr(run_query, "DENSE_MATCHES", 0)
    walked = [pages(run_query.make_filter(**q)) for q in queries]
    assert driven == walked and driven[0][0][1] == 26 and driven[-1] == [([], 0)]
