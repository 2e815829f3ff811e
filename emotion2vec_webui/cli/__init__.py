"""The command line: ``emotion2vec-webui`` and ``python -m emotion2vec_webui`` (entry point: ``cli/main.py``)."""
