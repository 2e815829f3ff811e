"""emotion2vec-webui: speech emotion recognition with Emotion2Vec+ on FunASR.

The package is cut as the data flows: ``audio`` (decode) → ``engine`` (model)
→ ``pipeline`` / ``results`` (result.json, run folders); ``cli``, ``server``,
``ui`` and ``batch`` are thin adapters over them.
"""

__version__ = "0.1.0"
