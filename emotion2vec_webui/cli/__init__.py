"""The command line: ``emotion2vec-webui`` and ``python -m emotion2vec_webui``."""

from emotion2vec_webui.cli.main import main

__all__ = ["main"]
