"""The Similarity tab: two clips in, the cosine of their utterance embeddings and both emotions side by side."""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI, bilingual
from emotion2vec_webui.runs.similarity import similarity_from_sources
from emotion2vec_webui.ui import text as ui_text

log = logging.getLogger(__name__)


def _clip_html(title: str, clip: dict) -> str:
    key = clip["emotion"]
    color = ui_text.EMOTION_COLORS.get(key, "#888")
    return (
        f'<div class="e2v-card e2v-sim-clip" data-emotion="{escape(key)}" style="--e2v-accent:{color}">'
        f'<div class="e2v-section">{escape(title)} · 🎧 {escape(clip["source_name"])} · ⏱ {clip["duration_s"]:.2f} s</div>'
        '<div class="e2v-head">'
        f'<div class="e2v-big-emoji">{EMOJI.get(key, "")}</div>'
        f'<div class="e2v-title"><div class="e2v-zh">{escape(ui_text.emotion_name(key))}</div></div>'
        f'<div class="e2v-conf"><div class="e2v-conf-num">{ui_text.percent(clip["confidence"])}</div>'
        '<div class="e2v-conf-label">置信度 / confidence</div></div></div>'
        f"{ui_text.score_bars_html(clip['scores'], key)}</div>"
    )


def similarity_html(out: dict) -> str:
    """The comparison: the cosine on top, then both clips' emotions side by side."""
    cos = float(out["cosine"])
    return (
        f'<div class="e2v-sim" data-cosine="{cos:.6f}">'
        '<div class="e2v-card"><div class="e2v-conf">'
        f'<div class="e2v-conf-num" id="similarity_cosine">{cos:.4f}</div>'
        '<div class="e2v-conf-label">余弦相似度（话语级嵌入）/ cosine similarity of the utterance embeddings</div>'
        "</div></div>"
        '<div style="display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px">'
        f"{_clip_html('A', out['a'])}{_clip_html('B', out['b'])}</div></div>"
    )


def compare(service, a_path: str | None, b_path: str | None) -> str:
    """Compare two uploaded or recorded files; every failure becomes an error card."""
    if not a_path or not b_path:
        return ui_text.error_card_html("bad_request", "请提供两段音频。Give two clips (A and B).")
    try:
        out = similarity_from_sources(service, a_path, Path(a_path).name, b_path, Path(b_path).name)
    except E2VError as exc:
        return ui_text.error_card_html(exc.code, exc.message)
    except Exception:  # the page shows a message, the log keeps the trace
        log.exception("UI similarity failed")
        return ui_text.error_card_html("internal_error", "Unexpected error while comparing; see the server log.")
    return similarity_html(out)


def build_similarity_tab(service) -> None:
    """The Similarity tab (call inside ``gr.Blocks``)."""
    import gradio as gr

    with gr.Tab(bilingual("Similarity", "相似度"), elem_id="similarity_tab"):
        gr.Markdown(
            "比较两段语音的情绪表示：话语级嵌入的余弦相似度（1 = 相同），以及两段各自的情绪。  \n"
            "Compare two clips: cosine similarity of their utterance embeddings (1 = identical), "
            "and each clip's emotion."
        )
        with gr.Row():
            a = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label=bilingual("Clip A", "音频 A"),
                elem_id="similarity_a",
            )
            b = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label=bilingual("Clip B", "音频 B"),
                elem_id="similarity_b",
            )
        button = gr.Button(bilingual("Compare", "比较"), variant="primary", elem_id="similarity_button")
        out = gr.HTML(elem_id="similarity_result")
        button.click(
            lambda x, y: compare(service, x, y), inputs=[a, b], outputs=out, api_name="similarity", concurrency_limit=2
        )
