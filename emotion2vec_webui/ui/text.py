"""HTML for the web UI: the result card, banners, error cards, segment and history tables.

Pure functions from a result.json dict (or a status) to an HTML string, so the
Recognize and History tabs draw the same card and tests need no browser.
Every string that came from a user (file names, messages) is escaped here.
Layout and colours live in ``static/ui.css``; inline styles carry only the
values that vary (bar widths, the emotion's colour).
"""

from __future__ import annotations

from html import escape

from emotion2vec_webui.labels import EMOJI, EMOTION_COLORS, EMOTIONS, EMOTIONS_ZH

# A server-folder box's placeholder when no input folder is configured (Batch and Train tabs).
INPUT_DIRS_UNSET = "未设置 E2V_INPUT_DIRS / E2V_INPUT_DIRS is not set"


# Error code → bilingual title shown above the message (one table for the UI).
ERROR_TITLES: dict[str, tuple[str, str]] = {
    "file_too_large": ("文件过大", "File too large"),
    "audio_too_long": ("音频过长", "Audio too long"),
    "audio_too_short": ("音频过短", "Audio too short"),
    "audio_empty": ("音频为空", "No audio in the file"),
    "audio_undecodable": ("无法解码音频", "Cannot decode this file"),
    "audio_nonfinite": ("音频数据无效", "Invalid samples (NaN/Inf)"),
    "audio_too_large_decoded": ("音频解码后过大", "Audio too large once decoded"),
    "bad_request": ("请求无效", "Invalid request"),
    "forbidden": ("不允许访问", "Not allowed"),
    "not_found": ("未找到", "Not found"),
    "unauthorized": ("需要登录", "Login required"),
    "model_unavailable": ("模型不可用", "Model unavailable"),
    "overloaded": ("服务器繁忙", "Server busy"),
    "storage_full": ("存储空间已满", "Output disk full"),
    "storage_unavailable": ("输出文件夹不可写", "Output folder not writable"),
    "request_timeout": ("上传超时", "Upload timed out"),
    "rate_limited": ("上传过于频繁", "Too many uploads"),
    "internal_error": ("内部错误", "Internal error"),
    "audio_no_stream": ("没有音频流", "No audio stream"),
    "url_forbidden": ("禁止访问该地址", "URL not allowed"),
    "url_unreachable": ("无法下载", "URL unreachable"),
    "url_timeout": ("下载超时", "URL timed out"),
    "head_mismatch": ("分类头与模型不匹配", "Head trained on another model"),
    "head_invalid": ("分类头无效", "Invalid head"),
    "run_busy": ("正在使用中", "In use right now"),
    "range_not_satisfiable": ("请求的范围无效", "Range not satisfiable"),
}

# Error code → a Chinese line shown above the (English) detail of an error, unless the detail has Chinese already.
ERROR_DETAILS_ZH: dict[str, str] = {
    "file_too_large": "文件超过上传上限（E2V_MAX_UPLOAD_MB）。",
    "audio_too_long": "音频超过时长上限（E2V_MAX_DURATION_S），请剪短后再试。",
    "audio_too_short": "音频太短，无法识别（下限 E2V_MIN_DURATION_S）。",
    "audio_empty": "文件里没有可用的音频。",
    "audio_undecodable": "无法解码这个文件：格式不支持或文件已损坏。",
    "audio_nonfinite": "音频样本含有 NaN 或无穷大。",
    "audio_too_large_decoded": "解码后的音频超出内存上限（E2V_DECODE_MEMORY_MB）。",
    "bad_request": "请求参数无效。",
    "forbidden": "不允许访问这个路径或资源。",
    "not_found": "找不到所请求的内容。",
    "unauthorized": "需要 API 令牌登录。",
    "model_unavailable": "模型不可用，见下方说明。",
    "overloaded": "队列已满，请稍后再试。",
    "storage_full": "输出磁盘已满，请清理后再试。",
    "storage_unavailable": "输出文件夹不可写。",
    "request_timeout": "上传时间过长，已中止。",
    "rate_limited": "上传过于频繁，请稍后再试。",
    "internal_error": "处理时出现意外错误，详见服务器日志。",
    "head_mismatch": "这个分类头是为另一个模型训练的。",
    "head_invalid": "这个分类头的文件已损坏或格式不对，请重新训练。",
    "run_busy": "该运行或批量正在写入或读取，未删除；请稍后再试。",
    "range_not_satisfiable": "请求的字节范围超出了文件末尾。",
}

GRANULARITY_NAMES: dict[str, tuple[str, str]] = {
    "utterance": ("整句", "utterance"),
    "frame": ("逐帧", "frame"),
}

MODEL_FIX_HINT = (
    "修复 / Fix: set <code>E2V_MODEL</code> to a local model directory (FunASR layout), or switch hub with "
    "<code>E2V_HUB=hf</code>, or pre-fill the hub cache (<code>MODELSCOPE_CACHE</code> / <code>HF_HOME</code>), "
    "then restart the server. Offline trial: <code>emotion2vec-webui make-test-model DIR</code>."
)


def _fix_hint(message: str) -> str:
    """The generic how-to-fix line, unless the loader's message already says how."""
    return "" if "E2V_MODEL" in message else f'<div class="e2v-hint">{MODEL_FIX_HINT}</div>'


def emotion_name(key: str) -> str:
    """``"开心 happy"`` for a class key (unknown keys are shown as given)."""
    return f"{EMOTIONS_ZH.get(key, key)} {key}"


def percent(x: float) -> str:
    return f"{100.0 * float(x):.1f}%"


def score_bars_html(scores: dict[str, float], highlight: str | None = None) -> str:
    """All nine scores as horizontal bars, highest first.

    Args:
        scores: class key → probability.
        highlight: the class to emphasise (the top one).

    Returns:
        An HTML fragment, one ``.e2v-row`` per class (``data-emotion`` names it).
    """
    rows = []
    for key in sorted(scores, key=lambda k: (-scores[k], EMOTIONS.index(k) if k in EMOTIONS else 99)):
        value = float(scores[key])
        color = EMOTION_COLORS.get(key, "#888")
        top = " e2v-top" if key == highlight else ""
        rows.append(
            f'<div class="e2v-row{top}" data-emotion="{escape(key)}">'
            f'<span class="e2v-lab"><span class="e2v-emo">{EMOJI.get(key, "")}</span>'
            f'<span class="e2v-zh-s">{escape(EMOTIONS_ZH.get(key, key))}</span>'
            f'<span class="e2v-en-s">{escape(key)}</span></span>'
            f'<span class="e2v-track"><span class="e2v-fill" style="width:{max(0.0, min(1.0, value)) * 100:.2f}%;'
            f'background:{color}"></span></span>'
            f'<span class="e2v-pct">{percent(value)}</span></div>'
        )
    return f'<div class="e2v-bars">{"".join(rows)}</div>'


def result_card_html(result: dict) -> str:
    """The headline card: emoji, Chinese and English name, confidence, all nine scores.

    Args:
        result: a result.json object.
    """
    key = str(result.get("emotion", "unknown"))
    color = EMOTION_COLORS.get(key, "#888")
    conf = float(result.get("confidence", 0.0))
    audio = result.get("audio") or {}
    model = result.get("model") or {}
    gran_zh, gran_en = GRANULARITY_NAMES.get(result.get("granularity", ""), ("", str(result.get("granularity", ""))))
    meta = [
        f'<span title="音频来源 / source">🎧 {escape(str(audio.get("source_name", "")))}</span>',
        f"<span>⏱ {float(audio.get('duration_s', 0.0)):.2f} s</span>",
        f"<span>{escape(gran_zh)} / {escape(gran_en)}</span>",
        f"<span>⚙ {float(result.get('processing_time_s', 0.0)):.2f} s</span>",
    ]
    emb = result.get("embedding") or {}
    if emb.get("shape"):
        shape = " × ".join(str(int(n)) for n in emb["shape"])
        meta.append(f'<span title="embedding.npy">🧬 特征向量 / embedding [{escape(shape)}]</span>')
    if model.get("random_weights"):
        meta.append('<span class="e2v-badge-warn">随机权重 / random weights</span>')
    if result.get("calibration"):  # docs/calibration.md: which calibration produced the confidence
        meta.append(f'<span class="e2v-calibrated">🎯 已校准 / calibrated: {escape(str(result["calibration"]["name"]))}</span>')
    if result.get("uncertain"):  # abstained: the top emotion stays below the mark
        meta.append(f'<span class="e2v-badge-warn e2v-uncertain">不确定 / uncertain · &lt; '
                    f'{percent(float(result.get("min_confidence") or 0.0))}</span>')  # fmt: skip
    warnings = "".join(f"<li>{escape(str(w))}</li>" for w in result.get("warnings") or [])
    warn_html = f'<ul class="e2v-warnings">{warnings}</ul>' if warnings else ""
    return (
        f'<div class="e2v-card" data-emotion="{escape(key)}" style="--e2v-accent:{color}">'
        '<div class="e2v-head">'
        f'<div class="e2v-big-emoji">{EMOJI.get(key, "")}</div>'
        '<div class="e2v-title">'
        f'<div class="e2v-zh">{escape(EMOTIONS_ZH.get(key, key))}</div>'
        f'<div class="e2v-en">{escape(key.capitalize())}</div>'
        + ('<div class="e2v-uncertain-title">不确定 / Uncertain — 置信度低于阈值，以上为最可能的情感 / below the '
           "threshold: the most likely emotion is shown above</div>" if result.get("uncertain") else "")
        + "</div>"
        '<div class="e2v-conf">'
        f'<div class="e2v-conf-num">{percent(conf)}</div>'
        '<div class="e2v-conf-label">置信度 / confidence</div></div></div>'
        f'<div class="e2v-meta">{"".join(meta)}</div>'
        f"{warn_html}"
        '<div class="e2v-section">九类得分 / All 9 scores</div>'
        f"{score_bars_html(result.get('scores') or {}, key)}"
        f"{head_section_html(result.get('head'))}{dimensions_section_html(result.get('dimensions'))}</div>"
    )


def dimensions_section_html(dims: dict | None) -> str:
    """A regression head's block of result.json (``"dimensions"``) as a card section: each target's value."""
    if not dims or not isinstance(dims.get("values"), dict):
        return ""
    names_zh = dict(zip(dims.get("targets") or [], dims.get("targets_zh") or [], strict=False))
    rows = "".join(
        f'<div class="e2v-hrow" data-target="{escape(str(t))}"><span class="e2v-lab"><span class="e2v-zh-s">'
        f"{escape(str(names_zh.get(t, t)))}</span>"
        + (f'<span class="e2v-en-s">{escape(str(t))}</span>' if names_zh.get(t, t) != t else "")
        + f'</span><span class="e2v-pct">{float(v):.3g}</span></div>'
        for t, v in dims["values"].items()
    )
    name = escape(str(dims.get("name", "")))
    return (
        f'<div class="e2v-head-block e2v-dims-block" data-head="{name}">'
        f'<div class="e2v-section">回归头 / Regression head: {name}</div><div class="e2v-bars">{rows}</div></div>'
    )


def head_section_html(head: dict | None) -> str:
    """A trained head's block of result.json (``"head"``) as a card section: top label and every label's bar."""
    if not head:
        return ""
    scores = head.get("scores") or {}
    names_zh = dict(zip(head.get("labels") or [], head.get("labels_zh") or [], strict=False))
    rows = []
    for label in sorted(scores, key=lambda k: -scores[k]):
        value = float(scores[label])
        zh = names_zh.get(label, label)
        top = " e2v-top" if label == head.get("label") else ""
        rows.append(
            f'<div class="e2v-hrow{top}" data-label="{escape(label)}"><span class="e2v-lab">'
            f'<span class="e2v-zh-s">{escape(zh)}</span>'
            + (f'<span class="e2v-en-s">{escape(label)}</span>' if zh != label else "")
            + f'</span><span class="e2v-track"><span class="e2v-fill" style="width:{max(0.0, min(1.0, value)) * 100:.2f}%;'
            f'background:#5b6ee1"></span></span><span class="e2v-pct">{percent(value)}</span></div>'
        )
    name = escape(str(head.get("name", "")))
    top = head.get("label", "")
    top_zh = head.get("label_zh") or top
    return (
        f'<div class="e2v-head-block" data-head="{name}">'
        f'<div class="e2v-section">自训练分类头 / Trained head: {name}</div>'
        + ('<div class="e2v-badge-warn e2v-uncertain">不确定 / uncertain</div>' if head.get("uncertain") else "")
        + f'<div class="e2v-head-top" data-label="{escape(str(head.get("label", "")))}"><b>{escape(str(top_zh))}</b>'
        f"{'' if top_zh == top else ' ' + escape(str(top))} · {percent(float(head.get('confidence', 0.0)))}</div>"
        f'<div class="e2v-bars">{"".join(rows)}</div></div>'
    )


def placeholder_card_html() -> str:
    """What the result area shows before the first run."""
    chips = "".join(
        f'<span class="e2v-chip" style="--e2v-accent:{EMOTION_COLORS[k]}"><span class="e2v-emo">{EMOJI[k]}</span>{escape(emotion_name(k))}</span>'
        for k in EMOTIONS
    )
    return (
        '<div class="e2v-card e2v-empty"><div class="e2v-empty-top"><div class="e2v-big-emoji">🎙️</div>'
        "<div><b>上传或录制一段语音，然后点击“开始识别”。</b><br>"
        "Upload or record speech, then press <b>Recognize</b>. "
        "The emotion, its confidence and all nine scores appear here.</div></div>"
        f'<div class="e2v-section">可识别的 9 类情绪 / The 9 emotions</div><div class="e2v-chips">{chips}</div></div>'
    )


def history_placeholder_html() -> str:
    """What the History tab shows before a run is opened."""
    return (
        '<div class="e2v-card e2v-empty"><div class="e2v-empty-top"><div class="e2v-big-emoji">🗂️</div>'
        "<div><b>在上方选择一条运行记录即可查看结果和下载文件。</b><br>"
        "Pick a run above (or click its row) to see its result and download its files again. "
        "Runs are read from the outputs folder, so they survive a server restart.</div></div></div>"
    )


def error_card_html(code: str, message: str) -> str:
    """A readable error: bilingual title, the message, and the stable code."""
    zh, en = ERROR_TITLES.get(code, ERROR_TITLES["internal_error"])
    hint = _fix_hint(message) if code == "model_unavailable" else ""
    detail = escape(message)
    if not any("\u3400" <= ch <= "\u9fff" for ch in message):  # an English-only detail gets a Chinese line
        detail = f"{escape(ERROR_DETAILS_ZH.get(code, zh + '。'))} {detail}"
    return (
        f'<div class="e2v-card e2v-error" data-error-code="{escape(code)}">'
        f'<div class="e2v-error-title"><span class="e2v-emo">⚠️</span> {escape(zh)} / {escape(en)}</div>'
        f'<div class="e2v-error-msg">{detail}</div>'
        f"{hint}"
        f'<div class="e2v-error-code">error code: <code>{escape(code)}</code></div></div>'
    )


def model_loading_card_html(elapsed_s: float, message: str = "") -> str:
    """The card for a request made while the model still loads: how long it has loaded, and to retry."""
    detail = f" ({escape(message)})" if message else ""
    return (
        '<div class="e2v-card e2v-error e2v-loading-card" data-error-code="model_unavailable" data-state="loading">'
        '<div class="e2v-error-title"><span class="e2v-spinner"></span> 模型加载中 / The model is still loading</div>'
        f'<div class="e2v-error-msg">已加载 {elapsed_s:.0f} 秒{detail}。请等页面顶部显示“模型就绪”后再点一次。'
        f"Loading for {elapsed_s:.0f} s so far. Press the button again once the banner at the top says "
        "the model is ready; nothing needs fixing.</div>"
        '<div class="e2v-error-code">error code: <code>model_unavailable</code></div></div>'
    )


def segments_html(segments: list[dict] | None) -> str:
    """The segments as a table (time range, emotion, confidence): frame runs, or speech segments (VAD)."""
    if not segments:
        return ""
    vad = segments[0].get("source") == "vad"
    title = "语音片段 / Speech segments (VAD)" if vad else "情绪片段 / Segments"
    rows = []
    for i, seg in enumerate(segments, 1):
        key = str(seg.get("emotion", "unknown"))
        rows.append(
            f'<tr><td class="e2v-num">{i}</td>'
            f'<td class="e2v-num">{float(seg.get("start_s", 0)):.2f} – {float(seg.get("end_s", 0)):.2f} s</td>'
            f'<td><span class="e2v-chip" style="--e2v-accent:{EMOTION_COLORS.get(key, "#888")}">'
            f'<span class="e2v-emo">{EMOJI.get(key, "")}</span>{escape(emotion_name(key))}</span></td>'
            f'<td class="e2v-num">{percent(seg.get("confidence", 0.0))}</td></tr>'
        )
    return (
        f'<div class="e2v-section">{title}</div><div class="e2v-table-wrap"><table class="e2v-table">'
        "<thead><tr><th>#</th><th>时间 / time</th><th>情绪 / emotion</th><th>置信度 / conf.</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def status_banner_html(state: str, message: str, info=None, elapsed_s: float | None = None) -> str:
    """The model status line at the top of the page, plus the random-weights warning.

    Args:
        state: ``loading``, ``ready`` or ``unavailable`` (service.ModelStatus.state).
        message: the status message (the reason when unavailable).
        info: model.ModelInfo when ready.
        elapsed_s: seconds since the server started (shown while loading).
    """
    if state == "ready" and info is not None:
        hub = f" · {escape(info.hub_id)}" if info.hub_id else ""
        html = (
            '<div class="e2v-status e2v-ready" data-state="ready">✅ 模型就绪 / Model ready: '
            f"<b>{escape(info.name)}</b>{hub} · {escape(info.device)} · {escape(info.dtype)} "
            f"· loaded in {info.load_s:.1f} s</div>"
        )
        if info.random_weights:
            html += (
                '<div class="e2v-status e2v-random" data-state="random_weights">⚠️ <b>随机权重 / RANDOM WEIGHTS</b> — '
                "这是测试模型，识别结果没有意义。This is a random-weight test model: its predictions are "
                "meaningless. Point <code>E2V_MODEL</code> at a real Emotion2Vec+ model for real results.</div>"
            )
        return html
    if state == "unavailable":
        return (
            '<div class="e2v-status e2v-unavailable" data-state="unavailable">⛔ <b>模型不可用 / Model unavailable</b>'
            f'<div class="e2v-error-msg">{escape(message)}</div>{_fix_hint(message)}</div>'
        )
    waited = f" ({elapsed_s:.0f} s)" if elapsed_s is not None else ""
    return (
        '<div class="e2v-status e2v-loading" data-state="loading"><span class="e2v-spinner"></span>'
        f"正在加载模型 / Loading the model{waited}: {escape(message)} — "
        "页面已可用，模型就绪后即可识别。The page works already; recognition starts once the model is ready.</div>"
    )


def header_html() -> str:
    """The page title."""
    return (
        '<div class="e2v-header"><div class="e2v-logo">🎭</div><div>'
        '<div class="e2v-h1">语音情感识别 / Speech Emotion Recognition</div>'
        '<div class="e2v-sub">Emotion2Vec+ · 9 类情绪 / 9 emotions · 整句或逐帧 / per utterance or per frame</div>'
        "</div></div>"
    )
