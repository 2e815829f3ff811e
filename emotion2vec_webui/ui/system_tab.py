"""The web UI's System tab: the model, versions and limits, and a live view of resources.

``ui.build_ui`` calls :func:`build_system_tab` inside its ``gr.Tabs``. The
figures come from :mod:`.metrics` (the same ones ``/metrics`` serves); this
module only lays them out. The live table refreshes every ``REFRESH_S``
seconds with a ``gr.Timer``, outside Gradio's queue so a busy model never
delays it.
"""

from __future__ import annotations

import time
from html import escape

from emotion2vec_webui.labels import bilingual

REFRESH_S = 3.0  # seconds between refreshes of the live view


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def _seconds(s: float | None) -> str:
    return "–" if s is None else f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 86400}d {s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"


def table_html(title: str, rows: list[tuple[str, str]]) -> str:
    """A two-column table (label, value) under a heading; everything escaped."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    # The shared table style scrolls past 320 px (long history lists); these short tables show whole.
    return (
        f'<h3>{escape(title)}</h3><div class="e2v-table-wrap" style="max-height: none">'
        f'<table class="e2v-table e2v-kv">{body}</table></div>'
    )


def model_rows(service) -> list[tuple[str, str]]:
    """The model: state, name, hub, device, dtype, size, load time (what is known so far)."""
    st, s = service.status, service.settings
    rows = [(bilingual("state", "状态"), st.state)]
    if st.info is None:
        rows += [
            (bilingual("model", "模型"), s.model),
            (bilingual("hub", "模型库"), s.hub),
            (bilingual("device (requested)", "设备（请求）"), s.device),
            (bilingual("message", "信息"), st.message),
        ]
        return rows
    i = st.info
    return rows + [
        (bilingual("model", "模型"), i.name),
        (bilingual("hub", "模型库"), i.hub),
        (bilingual("hub id", "模型 ID"), i.hub_id or "–"),
        (bilingual("weights", "权重目录"), i.path),
        (bilingual("device", "设备"), i.device),
        (bilingual("dtype", "精度"), i.dtype),
        (bilingual("precision choice", "精度选择"), i.precision_note or "–"),
        (bilingual("parameters", "参数量"), f"{i.num_parameters / 1e6:,.1f} M"),
        (bilingual("embedding width", "嵌入维度"), str(i.embedding_dim)),
        (bilingual("load time", "加载耗时"), f"{i.load_s:.1f} s"),
        (bilingual("random weights", "随机权重"), "yes" if i.random_weights else "no"),
    ]


def limit_rows(settings) -> list[tuple[str, str]]:
    """The limits a user runs into, with the variable that changes each."""
    return [
        (bilingual("max upload (E2V_MAX_UPLOAD_MB)", "上传上限"), f"{settings.max_upload_mb:g} MB"),
        (
            bilingual("duration (E2V_MIN/MAX_DURATION_S)", "时长范围"),
            f"{settings.min_duration_s:g} – {settings.max_duration_s:g} s",
        ),
        (bilingual("queue (E2V_MAX_QUEUE)", "队列上限"), f"{settings.max_queue} waiting"),
        (bilingual("API token (E2V_API_TOKEN)", "API 令牌"), "set" if settings.api_token else "not set"),
        (bilingual("outputs (E2V_OUTPUT_DIR)", "输出目录"), str(settings.output_dir)),
        (bilingual("logs (E2V_LOG_DIR)", "日志目录"), str(settings.log_dir)),
    ]


def version_rows() -> list[tuple[str, str]]:
    from emotion2vec_webui.runs.inference.status import versions

    names = {"app": bilingual("emotion2vec-webui (this app)", "本应用")}  # package names are the same in both
    return [(names.get(name, name), version) for name, version in versions().items()]


def resource_rows(snapshot: dict, uptime_s: float) -> list[tuple[str, str]]:
    """The live figures of :func:`metrics.resources`, formatted."""
    rows = [
        (bilingual("CPU (this process)", "CPU（本进程）"), f"{snapshot['cpu_percent']:.0f} %"),
        (bilingual("CPU (machine)", "CPU（整机）"), f"{snapshot['system_cpu_percent']:.0f} %"),
    ]
    load = snapshot.get("load_average")
    if load is not None:
        rows.append(
            (
                bilingual("load average (1 / 5 / 15 min)", "平均负载（1 / 5 / 15 分钟）"),
                f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} · {snapshot.get('cpu_count', '?')} CPU",
            )
        )
    rows.append((bilingual("memory (RSS)", "内存 (RSS)"), _mb(snapshot["rss_bytes"])))
    for gpu in snapshot["gpus"]:
        rows.append(
            (
                bilingual(f"GPU memory {gpu['device']}", f"显存 {gpu['device']}"),
                f"{_mb(gpu['allocated'])} allocated · {_mb(gpu['reserved'])} reserved · {_mb(gpu['peak'])} peak",
            )
        )
    if not snapshot["gpus"]:
        rows.append((bilingual("GPU memory", "显存"), "no CUDA device in use"))
    running = snapshot.get("running_s")
    rows += [
        (  # what runs now: a 10-minute file is no longer in the queue while the model works on it
            bilingual("model (inference worker)", "模型（推理）"),
            "空闲 / idle" if running is None else f"运行中 {_duration(running)} / running for {_duration(running)}",
        ),
        (bilingual("queue (waiting)", "队列（等待中）"), f"{snapshot['queue_depth']} / {snapshot['max_queue']}"),
        (bilingual("recognitions served", "已完成识别"), str(snapshot["served"])),
    ]
    if snapshot.get("errors") is not None:
        rows.append(
            (
                bilingual("errors / rejected (503)", "错误 / 拒绝 (503)"),
                f"{snapshot['errors']:.0f} / {snapshot['rejections']:.0f}",
            )
        )
    rows += [
        (
            bilingual(
                f"latency p50 / p95 (last {snapshot['recent']} runs)", f"延迟 p50 / p95（最近 {snapshot['recent']} 次）"
            ),
            f"{_seconds(snapshot['p50_s'])} / {_seconds(snapshot['p95_s'])}",
        ),
        (bilingual("uptime", "运行时间"), _duration(uptime_s)),
    ]
    return rows


def info_html(service) -> str:
    """Model, versions and limits; with the random-weights warning when it applies."""
    info = service.status.info
    warning = ""
    if info is not None and info.random_weights:
        warning = (
            '<div class="e2v-status e2v-random" data-state="random_weights">⚠️ <b>随机权重 / RANDOM WEIGHTS</b> — '
            "测试模型，结果没有意义。A random-weight test model: its predictions are meaningless.</div>"
        )
    return (
        warning
        + table_html(bilingual("Model", "模型"), model_rows(service))
        + table_html(bilingual("Limits", "限制"), limit_rows(service.settings))
        + table_html(bilingual("Versions", "版本"), version_rows())
    )


def resources_html(service) -> str:
    """The live view: CPU, memory, GPU memory, queue, runs served, latency."""
    from emotion2vec_webui.runs.inference.status import resources

    snapshot = resources(service)
    stamp = time.strftime("%H:%M:%S")
    title = bilingual(f"Resources (updated {stamp}, every {REFRESH_S:g} s)", "资源")
    return table_html(title, resource_rows(snapshot, time.time() - service.started_at))


def build_system_tab(service) -> None:
    """Add the System tab to the ``gr.Tabs`` being built (call inside ``gr.Blocks``)."""
    import gradio as gr

    from emotion2vec_webui.runs.inference.status import cpu_meter, recent_runs

    recent_runs(service)  # start counting now, not at the first look at the tab
    cpu_meter.prime()  # the first CPU figure covers the time since start, not nothing (psutil's first 0 %)
    with gr.Tab(bilingual("System", "系统"), id="system") as tab:
        with gr.Row():
            with gr.Column():
                live = gr.HTML(resources_html(service), elem_id="system_resources")
            with gr.Column():
                info = gr.HTML(info_html(service), elem_id="system_info")
        timer = gr.Timer(REFRESH_S)

    def refresh() -> tuple[str, str]:
        return resources_html(service), info_html(service)

    # Static first values (a callable value would publish an unnamed /lambda API endpoint); refreshed on view.
    timer.tick(refresh, None, [live, info], queue=False, show_progress="hidden", api_visibility="private")
    tab.select(refresh, None, [live, info], queue=False, show_progress="hidden", api_visibility="private")
