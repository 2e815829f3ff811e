"""The Gradio UI. Importing this package first lets ``import gradio`` skip rewriting Gradio's type stubs
(:mod:`emotion2vec_webui.ui.gradio_import`): every Gradio import of the app is in this package or after it."""

from emotion2vec_webui.ui.gradio_import import install as _install

_install()
