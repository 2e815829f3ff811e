"""The JSON Schema of ``result.json``, shipped in the package and served at ``GET /api/v1/schema/result``.

``jsonschema`` (a well-kept implementation of the standard) validates against
it; tests check every result.json they see with :func:`validate_result`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def result_schema() -> dict:
    """The result.json schema (JSON Schema draft 2020-12) as a dict."""
    text = resources.files("emotion2vec_webui.runs").joinpath("schemas/result.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_result(result: dict) -> None:
    """Raise ``jsonschema.ValidationError`` when ``result`` does not match the result.json schema."""
    import jsonschema

    jsonschema.validate(result, result_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
