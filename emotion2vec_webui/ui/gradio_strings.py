"""Gradio's own visible strings (upload prompt, Record/Stop, footer), in both languages like ours.

Gradio translates its own strings in the page with svelte-i18n, from the
browser's language. Custom translations passed to ``mount_gradio_app(i18n=…)``
are added to the same dictionaries under their flat keys (``"audio.record"``),
and svelte-i18n looks a flat key up before the nested built-in one, so these
texts replace Gradio's for English and Chinese browsers alike: the page reads
"录制 / Record" whatever the browser's language, as every label of ours does.
``common.complete`` has no built-in text at all in Gradio 6.31 (its status
tracker announced the bare key); it gets one here.

Only texts a person reads are listed. The player's ``aria-label`` (``audio.play``)
keeps Gradio's own: it is not shown, and tests and tools find the player's
Play button by it.
"""

from __future__ import annotations

from emotion2vec_webui.labels import bilingual

# Gradio 6.31's i18n key → (English, 中文).
GRADIO_STRINGS: dict[str, tuple[str, str]] = {
    "upload_text.drop_audio": ("Drop Audio Here", "将音频拖放到此处"),
    "upload_text.drop_file": ("Drop File Here", "将文件拖放到此处"),
    "upload_text.drop_image": ("Drop Image Here", "将图像拖放到此处"),
    "upload_text.click_to_upload": ("Click to Upload", "点击上传"),
    "common.or": ("or", "或"),  # shown as "- 或 / or -" between the drop and click prompts
    "audio.record": ("Record", "录制"),
    "audio.stop": ("Stop", "停止"),
    "audio.waiting": ("Waiting", "等待中"),
    "audio.resume": ("Resume", "继续"),
    "audio.pause": ("Pause", "暂停"),  # the recorder's pause button text (also the player's aria-label while playing)
    "audio.no_microphone": ("No microphone found", "找不到麦克风"),
    "file.uploading": ("Uploading…", "正在上传…"),
    "common.loading": ("Loading", "加载中"),
    "common.clear": ("Clear", "清除"),
    "common.upload": ("Upload", "上传"),  # the File component's upload button; untranslated in Gradio 6.31
    "common.complete": ("Complete", "完成"),
    "errors.use_via_api": ("Use via API", "通过 API 使用"),
    "common.settings": ("Settings", "设置"),
    "common.built_with_gradio": ("Built with Gradio", "使用 Gradio 构建"),
}
LOCALES = ("en", "zh-CN", "zh-TW")  # Gradio's locale codes for English and Chinese browsers


def translations() -> dict[str, dict[str, str]]:
    """``{locale: {key: "中文 / English"}}`` for :data:`LOCALES`."""
    texts = {key: bilingual(en, zh) for key, (en, zh) in GRADIO_STRINGS.items()}
    return {locale: dict(texts) for locale in LOCALES}


def gradio_i18n():
    """A ``gr.I18n`` with :func:`translations`, for ``mount_gradio_app(i18n=…)``."""
    import gradio as gr

    return gr.I18n(**translations())
