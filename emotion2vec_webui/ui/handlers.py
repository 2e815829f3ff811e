"""What the web UI's events do, as plain functions (no Gradio import; tests call them directly).

Model work goes through :class:`service.Service` only (the bounded, single
inference worker shared with the REST API). A run is shown through a
:class:`RunView` built from its result.json, so the Recognize tab and the
History tab (after a restart, too) show the same card, charts and files.
File outputs only ever point at artifacts inside run folders we wrote,
looked up by a validated run id (``results.run_path``), never at a path a user sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI
from emotion2vec_webui.runs.catalog.folders import list_runs, read_result, run_path  # single and batch runs
from emotion2vec_webui.runs.inputs.url_fetch import Fetched, FetchPolicy, download_slots, fetch_url
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.similarity import RECORD_ID_RE, RECORDS_DIR, list_records, read_record
from emotion2vec_webui.runs.storage import ARTIFACTS
from emotion2vec_webui.ui import text as ui_text

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50  # runs listed in the History tab


@dataclass(frozen=True)
class RunView:
    card_html: str  # the result card (or an error card)
    result: dict | None  # the result.json object (None on error)
    run_id: str | None  # the run folder's name
    files: tuple[str, ...]  # artifact paths inside the run folder, for download
    log_text: str  # the processing log
    error_code: str | None = None  # set when the run failed

    @property
    def is_frame(self) -> bool:
        return bool(self.result and self.result.get("frames"))

    @property
    def has_segments(self) -> bool:
        """Whether result.json lists segments (frame runs, or speech segments in VAD mode)."""
        return bool(self.result and self.result.get("segments"))

    def segments_html(self) -> str:
        return ui_text.segments_html((self.result or {}).get("segments"))

    def timeline_figure(self):
        """The timeline chart, or None at utterance granularity."""
        from emotion2vec_webui.ui.charts import timeline_figure

        return timeline_figure(self.result) if self.is_frame else None

    def run_label(self) -> str:
        """A one-line Markdown naming the run folder."""
        if not self.run_id:
            return ""
        return f"📁 运行目录 / Run folder: `{self.run_id}`"


def error_view(code: str, message: str, log_text: str = "") -> RunView:
    return RunView(ui_text.error_card_html(code, message), None, None, (), log_text, error_code=code)


def loading_or_error_view(service, exc: E2VError) -> RunView:
    """The error card for ``exc``; while the model is still loading, a "loading, retry" card instead of a fix."""
    status = getattr(service, "status", None)
    if exc.code == "model_unavailable" and getattr(status, "state", "") == "loading":
        elapsed = time.time() - getattr(service, "started_at", time.time())
        html = ui_text.model_loading_card_html(elapsed, getattr(status, "message", ""))
        return RunView(html, None, None, (), "", error_code=exc.code)
    return error_view(exc.code, exc.message)


def run_files(root: str | Path, run_id: str) -> tuple[str, ...]:
    """The run's downloadable artifacts that exist (embedding.npy only when written)."""
    paths = (run_path(root, run_id, name) for name in ARTIFACTS)
    return tuple(str(p) for p in paths if p is not None)


def view_run(root: str | Path, run_id: str, result: dict | None = None, log_text: str | None = None) -> RunView:
    """The view of one run folder (its result.json is read when not given).

    Args:
        root: the outputs root.
        run_id: the run folder's name (validated; anything else gives a ``not_found`` card).
        result: the result.json object, when the caller has it.
        log_text: the processing log, when the caller has it (else run.log is read).
    """
    if RECORD_ID_RE.match(run_id or ""):  # a kept similarity comparison (History lists them too)
        return similarity_view(root, run_id)
    folder = run_path(root, run_id or "")
    if folder is None:
        return error_view("not_found", f"No run named {run_id!r} in the outputs folder. / 输出文件夹中没有名为 {run_id!r} 的运行。")
    result = result if result is not None else read_result(root, run_id)
    if result is None:
        return error_view("not_found", f"The run {run_id} has no readable result.json. "
                                       f"/ 运行 {run_id} 没有可读的 result.json。")  # fmt: skip
    if log_text is None:
        log_path = run_path(root, run_id, "run.log")
        log_text = log_path.read_text("utf-8", errors="replace") if log_path else ""
    return RunView(ui_text.result_card_html(result), result, run_id, run_files(root, run_id), log_text)


def similarity_view(root: str | Path, record_id: str) -> RunView:
    """A kept similarity comparison (``<outputs>/similarity/<id>.json``) shown as on the Similarity tab."""
    from emotion2vec_webui.ui.similarity_tab import similarity_html

    record = read_record(root, record_id)
    if record is None:
        return error_view("not_found", f"No similarity record named {record_id!r}. / 没有这条相似度记录。")
    path = Path(root).resolve() / RECORDS_DIR / f"{record_id}.json"
    return RunView(similarity_html(record), None, None, (str(path),), "")


def _similarity_rows(root: str | Path, limit: int) -> list[list]:
    rows = []
    for rec in list_records(root, limit=limit):
        a, b = rec.get("a") or {}, rec.get("b") or {}
        emotions = " ↔ ".join(f"{EMOJI.get(c.get('emotion', ''), '')} {ui_text.emotion_name(c.get('emotion', ''))}".strip() for c in (a, b))
        rows.append(
            [
                rec.get("id", ""),
                str(rec.get("timestamp", ""))[:19].replace("T", " "),
                f"{a.get('source_name', '')} ↔ {b.get('source_name', '')}",
                emotions,
                f"cos {rec.get('cosine', 0):.3f} · JS {rec.get('scores_similarity', 0):.3f}",
                "相似度 / similarity",
                "",
            ]
        )
    return rows


def recognize(
    service,
    audio_path: str | None,
    granularity: str,
    extract_embedding: bool,
    segmentation: str = "frames",
    *,
    url: str | None = None,
    channels: str = "mix",
    head: str | None = None,
    progress=None,
    calibration: str | None = None,
    min_confidence: float | None = None,
) -> RunView:
    """Recognize one uploaded or recorded file, or a URL; every failure becomes an error card.

    Args:
        service: the server's :class:`service.Service`.
        audio_path: the file Gradio stored (upload or microphone recording), or None.
        granularity: ``utterance`` or ``frame``.
        extract_embedding: write embedding.npy.
        segmentation: ``frames`` (segments from frame emotions) or ``vad`` (one utterance per speech segment).
        url: an http(s) URL, used when no file is given (downloaded under REST's audio_url rules).
        channels: ``mix``, ``left``, ``right`` or a channel index.
        head: a trained head's name (E2V_HEADS_DIR), applied beside the nine classes; empty: none.
        progress: ``progress(fraction, step)`` for each step (decoded, writing), e.g. the page's progress bar.
        calibration: a saved calibration's name (docs/calibration.md); empty: none.
        min_confidence: abstain below this confidence ("uncertain / 不确定"); None: never.
    """
    url = (url or "").strip()
    if not audio_path and not url:
        return error_view("bad_request", "请先上传、录制音频或填写链接。Upload or record audio, or give a URL, first.")
    try:  # every option checked here, before any download or decode (options.py)
        options = RecognizeOptions(
            granularity=granularity, extract_embedding=bool(extract_embedding), segmentation=segmentation,
            channels=channels, head=head or None, calibration=calibration or None, min_confidence=min_confidence,
        )  # fmt: skip
    except E2VError as exc:
        return error_view(exc.code, exc.message)
    try:
        if audio_path:
            path = Path(audio_path)
            outcome = service.recognize(path, source_name=path.name, options=options, progress=progress)
        else:
            outcome = service.recognize(download(service.settings, url), options=options, progress=progress)
    except E2VError as exc:
        log.info("UI recognition failed: %s", exc)
        return loading_or_error_view(service, exc)
    except Exception:  # the page shows a message, the log keeps the trace
        log.exception("UI recognition failed")
        return error_view(
            "internal_error",
            "Unexpected error while processing this file; see the server log. / 处理该文件时出现意外错误，请查看服务器日志。",
        )
    return view_run(service.settings.output_dir, outcome.run.run_id, outcome.result, outcome.log_text)


def download(settings, url: str) -> Fetched:
    """The URL box: download under REST's rules, holding one of the server's download slots (E2V_URL_MAX_CONCURRENT).

    Gradio's queue already bounds how many UI events run at once, so no per-client bound applies here.

    Raises:
        E2VError: ``overloaded`` when every download slot is taken, or what ``url_fetch.fetch_url`` raises.
    """
    with download_slots(settings.url_max_concurrent, settings.url_max_per_client).hold():
        return fetch_url(url, FetchPolicy.from_settings(settings))


def recognize_api(
    service,
    audio_path: str | None,
    granularity: str = "utterance",
    extract_embedding: bool = True,
    segmentation: str = "frames",
    channels: str = "mix",
    head: str | None = None,
    audio_url: str | None = None,
) -> dict:
    """The scripting endpoint (``/recognize`` for gradio_client): result.json plus ``run_id``.

    The options are REST's, checked by :class:`RecognizeOptions` before any download or decode; ``audio_url``
    is used when no file is given (downloaded under REST's rules).

    Raises:
        E2VError: with its code, for the adapter to turn into ``gr.Error``.
    """
    url = (audio_url or "").strip()
    if not audio_path and not url:
        raise E2VError("bad_request", "No audio file or audio_url given. / 没有提供音频文件或 audio_url。")
    options = RecognizeOptions(granularity=granularity, extract_embedding=extract_embedding,
                               segmentation=segmentation, channels=channels, head=head or None)  # fmt: skip
    if audio_path:
        path = Path(audio_path)
        outcome = service.recognize(path, source_name=path.name, options=options)
    else:
        outcome = service.recognize(download(service.settings, url), options=options)
    return {**outcome.result, "run_id": outcome.run.run_id}


def status_banner(service) -> tuple[str, bool]:
    """The model status banner and whether polling can stop (ready or unavailable)."""
    st = service.status
    elapsed = time.time() - getattr(service, "started_at", time.time())
    html = ui_text.status_banner_html(st.state, st.message, st.info, elapsed)
    return html, st.state != "loading"


def _granularity_name(value: str) -> str:
    """``逐帧 / frame`` for the History table (an unknown value as it is)."""
    zh, en = ui_text.GRANULARITY_NAMES.get(value, ("", value))
    return f"{zh} / {en}" if zh else en


def history_rows(root: str | Path, limit: int = HISTORY_LIMIT) -> list[list]:
    """Recent runs, single and batch: [run id, time, file, emotion, confidence, granularity, batch].

    Newest first, grouped by batch: a batch's runs follow each other (newest first) at the place of
    its newest run. A batch run's id (``<batch>~outputs_…``) opens like a single run's.
    """
    rows = []
    runs = list_runs(root, limit=limit)
    first = {}
    for i, run in enumerate(runs):
        first.setdefault(run.batch or run.run_id, i)
    runs = sorted(runs, key=lambda r: first[r.batch or r.run_id])  # stable: newest first inside a batch
    for run in runs:
        res = read_result(root, run.run_id) or {}
        key = str(res.get("emotion", ""))
        emotion = f"{EMOJI.get(key, '')} {ui_text.emotion_name(key)}" if key else "—"
        rows.append(
            [
                run.run_id,
                str(res.get("timestamp", ""))[:19].replace("T", " "),
                str((res.get("audio") or {}).get("source_name", "")),
                emotion.strip(),
                ui_text.percent(res["confidence"]) if "confidence" in res else "—",
                _granularity_name(str(res.get("granularity", ""))),
                run.batch or "",
            ]
        )
    for sim in _similarity_rows(root, limit):  # kept comparisons, in time order among the runs
        at = next((i for i, r in enumerate(rows) if r[1] < sim[1]), len(rows))
        rows.insert(at, sim)
    return rows[:limit]
