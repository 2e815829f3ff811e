"""The Similarity tab: two clips in; the embedding cosine, the score-distribution similarity, what they mean, both emotions.

The page's button shows HTML; the public Gradio API endpoint ``/similarity``
returns the comparison as data (a dict: ``cosine``, ``scores_similarity`` …,
see :mod:`runs.similarity`), so ``gradio_client`` scripts get numbers, not markup.
Every comparison is kept (``<outputs>/similarity/``) and listed in History.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOJI, bilingual
from emotion2vec_webui.runs.similarity import MEANING, similarity_from_sources
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


def _number(value: float, element_id: str, label: str) -> str:
    return (
        f'<div class="e2v-conf"><div class="e2v-conf-num" id="{element_id}">{value:.4f}</div>'
        f'<div class="e2v-conf-label">{label}</div></div>'
    )


def similarity_html(out: dict) -> str:
    """The comparison: both numbers and what they mean on top, then both clips' emotions side by side."""
    cos = float(out["cosine"])
    js = out.get("scores_similarity")
    verdict = f"{out['verdict']} / {out['verdict_zh']}" if out.get("verdict") else ""
    record = f" · 📁 {escape(out['record'])}" if out.get("record") else ""
    return (
        f'<div class="e2v-sim" data-cosine="{cos:.6f}" data-scores-similarity="{js if js is not None else ""}">'
        '<div class="e2v-card"><div style="display:flex;gap:24px;flex-wrap:wrap">'
        + _number(cos, "similarity_cosine", "余弦相似度（话语级嵌入）/ cosine similarity of the utterance embeddings")
        + (
            _number(float(js), "similarity_scores", "情绪分布相似度（1 − JS 散度）/ emotion score similarity (1 − JSD)")
            if js is not None
            else ""
        )
        + "</div>"
        + (f'<div class="e2v-section" id="similarity_verdict">{escape(verdict)}{record}</div>' if verdict else "")
        + f'<div class="e2v-conf-label" id="similarity_meaning">{escape(MEANING[0])}<br>{escape(MEANING[1])}</div>'
        "</div>"
        '<div style="display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px">'
        f"{_clip_html('A', out['a'])}{_clip_html('B', out['b'])}</div></div>"
    )


def compare_data(service, a_path: str | None, b_path: str | None) -> dict:
    """The comparison as data (the ``/similarity`` API endpoint).

    Raises:
        E2VError: a clip is missing or unusable, or the model is not ready.
    """
    if not a_path or not b_path:
        raise E2VError("bad_request", "Give two clips (A and B). / 请提供两段音频。")
    return similarity_from_sources(service, a_path, Path(a_path).name, b_path, Path(b_path).name)


def compare(service, a_path: str | None, b_path: str | None) -> str:
    """Compare two uploaded or recorded files; every failure becomes an error card."""
    try:
        out = compare_data(service, a_path, b_path)
    except E2VError as exc:
        return ui_text.error_card_html(exc.code, exc.message)
    except Exception:  # the page shows a message, the log keeps the trace
        log.exception("UI similarity failed")
        return ui_text.error_card_html(
            "internal_error", "Unexpected error while comparing; see the server log. / 比较时出现意外错误，请查看服务器日志。"
        )
    return similarity_html(out)


def build_similarity_tab(service) -> None:
    """The Similarity tab (call inside ``gr.Blocks``)."""
    import gradio as gr

    with gr.Tab(bilingual("Similarity", "相似度"), elem_id="similarity_tab"):
        gr.Markdown(
            "比较两段语音：话语级嵌入的余弦相似度、九类情绪得分分布的相似度，以及两段各自的情绪；每次比较都会保存，"
            "可在“历史”中查看。  \n"
            "Compare two clips: cosine similarity of their utterance embeddings, similarity of their nine-class "
            "emotion score distributions, and each clip's emotion; every comparison is kept and listed in History."
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
            lambda x, y: compare(service, x, y),
            inputs=[a, b],
            outputs=out,
            api_name="similarity_ui",
            api_visibility="undocumented",
            concurrency_limit=2,
        )

        # The scripting endpoint: the same two clips in, the comparison as a dict out (not HTML).
        api_out = gr.JSON(visible=False)
        api_trigger = gr.Button(visible=False)

        def similarity_api(clip_a, clip_b):
            try:
                return compare_data(service, clip_a, clip_b)
            except E2VError as exc:
                raise gr.Error(f"{exc.message} [{exc.code}]") from None

        api_trigger.click(
            similarity_api,
            [a, b],
            api_out,
            api_name="similarity",
            api_description="Compare two clips: returns cosine, scores_similarity, verdict, meaning, a and b.",
            concurrency_limit=2,
        )
