"""Gradio's own visible strings (upload prompt, Record/Stop, footer), in both languages like ours.

Gradio translates its own strings in the page with svelte-i18n, from the
browser's language. Custom translations passed to ``mount_gradio_app(i18n=…)``
are added to the same dictionaries under their flat keys (``"audio.record"``),
and svelte-i18n looks a flat key up before the nested built-in one, so these
texts replace Gradio's for English and Chinese browsers alike: the page reads
"录制 / Record" whatever the browser's language, as every label of ours does.
``common.complete`` has no built-in text at all in Gradio 6.31 (its status
tracker announced the bare key); it gets one here.

Screen readers read aria-labels and browsers show ``title`` tooltips, so they
are bilingual too. Where Gradio looks one up by key (the audio drop area's
``audio.drop_to_upload``) it is in :data:`GRADIO_STRINGS`; most are written
into Gradio's components as plain English ("Record audio", "Copy table data",
"Fullscreen" …: grep the text in ``gradio/templates/frontend/assets``), and for
those :func:`head_html` adds a small script that replaces them on the page as
Gradio draws them (:data:`GRADIO_ATTRIBUTES`). The same script makes the status
tracker's English literals over a busy output ("processing |", "queue: 1/2 |")
bilingual as Gradio writes or rewrites them (:data:`GRADIO_TEXT_PATTERNS`). The player's ``aria-label``
(``audio.play``) keeps Gradio's own: tests and tools find the player's Play
button by it (it appears only once a clip is loaded).
"""

from __future__ import annotations

import json

from emotion2vec_webui.labels import bilingual

# Gradio 6.31's i18n key → (English, 中文).
GRADIO_STRINGS: dict[str, tuple[str, str]] = {
    "upload_text.drop_audio": ("Drop Audio Here", "将音频拖放到此处"),
    "audio.drop_to_upload": ("Drop an audio file here to upload", "将音频文件拖放到此处上传"),  # drop area aria-label
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
    "common.upload": ("Upload", "上传"),
    "common.download": ("Download", "下载"),  # the player's download button (aria-label and tooltip)
    "common.share": ("Share", "分享"),  # the File component's upload button; untranslated in Gradio 6.31
    "common.complete": ("Complete", "完成"),
    "common.error": ("Error", "错误"),  # the error toast's title
    "common.progress": ("Progress", "进度"),  # a progress bar's label
    # the line a queued event shows (Gradio fills in the numbers); untranslated in Gradio 6.31's zh-CN
    "status.queue_position": ("In queue: {position} of {size}", "排队中：第 {position} 位，共 {size} 位"),
    "errors.use_via_api": ("Use via API", "通过 API 使用"),
    "common.settings": ("Settings", "设置"),
    "common.built_with_gradio": ("Built with Gradio", "使用 Gradio 构建"),
}
LOCALES = ("en", "zh-CN", "zh-TW")  # Gradio's locale codes for English and Chinese browsers

# Gradio 6.31's aria-labels and tooltips written as English text in its components (no i18n key): English → 中文.
GRADIO_ATTRIBUTES: dict[str, str] = {
    "Upload file": "上传文件",  # the audio input's source buttons
    "Upload a file": "上传文件",
    "Record audio": "录音",
    "Capture from camera": "从摄像头拍摄",
    "Select input device": "选择输入设备",  # the microphone picker (Live, recording)
    "Stop recording": "停止录音",
    "Click to upload or drop files": "点击上传或拖放文件",  # the file drop areas (Batch, Train)
    "Table actions": "表格操作",  # the table toolbar (Batch, Train, History)
    "Copy table data": "复制表格数据",
    "Copied to clipboard": "已复制到剪贴板",
    "Fullscreen": "全屏",
    "Exit fullscreen mode": "退出全屏",
    "Dataframe": "数据表",  # a table without a label
    "Empty value": "空值",  # an empty cell
    "Gradio footer navigation": "Gradio 页脚导航",
    "Adjust volume": "调节音量",  # the player of a loaded clip
    "Reset audio": "还原音频",
    "Trim audio to selection": "将音频裁剪到所选部分",
    "undo": "撤销",
}
# The same for labels with a number in them: (JavaScript regex on the English, 中文 with $1).
GRADIO_ATTRIBUTE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^Adjust playback speed to ([\d.]+)x$", "播放速度改为 $1 倍"),
    (r"^Skip backwards by ([\d.]+) seconds$", "后退 $1 秒"),
    (r"^Skip forward by ([\d.]+) seconds$", "前进 $1 秒"),
)
ATTRIBUTES = ("aria-label", "title")  # the attributes translated on the page
# Text Gradio 6.31's status tracker writes as English literals over a busy output (no i18n key):
# (JavaScript regex on the whole text, 中文 with $1, $2).
GRADIO_TEXT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^processing \|$", "处理中 |"),
    (r"^queue: (\d+)/(\d*) \|$", "排队 $1/$2 |"),
)

# Replaces the attributes above as Gradio draws or redraws them (a MutationObserver on the whole page).
_SCRIPT = """<script>
(function () {
  if (window.e2vAttrStrings) return;
  const MAP = (window.e2vAttrStrings = %s);
  const PATTERNS = %s.map(([re, zh]) => [new RegExp(re), zh]);
  const ATTRS = %s;
  const TEXTS = %s.map(([re, zh]) => [new RegExp(re), zh]);
  const fixText = (t) => {
    const v = (t.data || "").trim();
    if (!v || v.length > 40 || v.includes(" / ")) return;
    for (const [re, zh] of TEXTS) if (re.test(v)) { t.data = v.replace(re, zh) + " / " + v; return; }
  };
  const bilingual = (v) => {
    if (Object.prototype.hasOwnProperty.call(MAP, v)) return MAP[v];
    for (const [re, zh] of PATTERNS) if (re.test(v)) return v.replace(re, zh) + " / " + v;
    return null;
  };
  const fix = (el) => {
    for (const a of ATTRS) {
      const v = el.getAttribute(a);
      const both = v && bilingual(v);
      if (both) el.setAttribute(a, both);
    }
  };
  const scan = (node) => {
    if (node.nodeType === 3) return fixText(node);
    if (node.nodeType !== 1) return;
    fix(node);
    node.querySelectorAll("[aria-label],[title]").forEach(fix);
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) fixText(walker.currentNode);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") fix(r.target);
      else if (r.type === "characterData") fixText(r.target);
      else r.addedNodes.forEach(scan);
    }
  }).observe(document.documentElement,
             { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ATTRS });
  scan(document.documentElement);
})();
</script>
"""


def translations() -> dict[str, dict[str, str]]:
    """``{locale: {key: "中文 / English"}}`` for :data:`LOCALES`."""
    texts = {key: bilingual(en, zh) for key, (en, zh) in GRADIO_STRINGS.items()}
    return {locale: dict(texts) for locale in LOCALES}


def gradio_i18n():
    """A ``gr.I18n`` with :func:`translations`, for ``mount_gradio_app(i18n=…)``."""
    import gradio as gr

    return gr.I18n(**translations())


def attribute_translations() -> dict[str, str]:
    """``{English: "中文 / English"}`` for :data:`GRADIO_ATTRIBUTES`."""
    return {en: bilingual(en, zh) for en, zh in GRADIO_ATTRIBUTES.items()}


def head_html() -> str:
    """The ``<head>`` script that makes Gradio's built-in aria-labels, tooltips and status texts bilingual on the page."""
    table = json.dumps(attribute_translations(), ensure_ascii=False).replace("</", "<\\/")
    patterns = json.dumps([list(p) for p in GRADIO_ATTRIBUTE_PATTERNS], ensure_ascii=False)
    texts = json.dumps([list(p) for p in GRADIO_TEXT_PATTERNS], ensure_ascii=False)
    return _SCRIPT % (table, patterns, json.dumps(list(ATTRIBUTES)), texts)
