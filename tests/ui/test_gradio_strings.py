"""Gradio's own strings are mounted as custom translations, "中文 / English", for English and Chinese browsers."""

from __future__ import annotations

import re

from emotion2vec_webui.ui.gradio_strings import GRADIO_STRINGS, LOCALES, translations

CJK = re.compile(r"[\u3400-\u9fff]")


def test_every_string_is_bilingual_in_every_locale():
    table = translations()
    assert set(table) == set(LOCALES) and {"en", "zh-CN"} <= set(LOCALES)
    for locale, texts in table.items():
        assert set(texts) == set(GRADIO_STRINGS), locale
        for key, text in texts.items():
            en, zh = GRADIO_STRINGS[key]
            assert text == f"{zh} / {en}" and CJK.search(zh) and not CJK.search(en), (locale, key, text)
    # the keys the page showed in English only before (issue 17), and the one Gradio leaves untranslated
    assert {"upload_text.drop_audio", "upload_text.click_to_upload", "audio.record", "audio.stop",
            "errors.use_via_api", "common.built_with_gradio", "common.complete",
            "status.queue_position"} <= set(GRADIO_STRINGS)  # fmt: skip
    # the queue line keeps the placeholders Gradio fills in, in both languages
    assert all(("{position}" in text) == ("{size}" in text) for pair in GRADIO_STRINGS.values() for text in pair)
    assert "{position}" in GRADIO_STRINGS["status.queue_position"][1]
    assert "audio.play" not in GRADIO_STRINGS  # an aria-label tools find the player by; never shown


def test_the_page_config_carries_the_translations(settings, monkeypatch):
    """In the config the page embeds (what mount_gradio_app computes), not only in the /config route's."""
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui import app as ui

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    demo = ui.build_ui(Service(settings))  # not started: the model is not needed to build the page
    assert demo.get_config_file()["i18n_translations"] == translations()
