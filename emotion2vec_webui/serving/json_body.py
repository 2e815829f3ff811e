"""One reader for every JSON request body: bounded in bytes, values and depth, and only text that encodes.

Every route that takes JSON reads it here (``POST /api/v1/recognize``,
``POST /api/v1/heads``, ``PATCH /api/v1/runs/{id}/speakers``), never with
``request.json()`` or a FastAPI body parameter, so that each refusal is the
same typed ``422 bad_request`` — except size, which is ``413 file_too_large``:

* **bytes**: small routes read at most ``max_bytes`` (64 KB by default) and
  stop reading there (a larger ``Content-Length`` is refused before reading);
  recognize's body is bounded by the upload cap (``guards.ApiGuardMiddleware``);
* **values**: more than :data:`MAX_CONTAINERS` ``[``/``{`` or :data:`MAX_COMMAS`
  commas are refused before parsing (counted in C over the raw bytes, inside
  strings too, which only makes the bound stricter): a 100 MB body of ``[]``
  would otherwise become millions of Python objects;
* **depth**: more than :data:`MAX_DEPTH` levels (``json`` itself stops at the
  recursion limit with a ``RecursionError``, caught here too);
* **text**: a lone surrogate (``"\\ud800"``) is valid JSON but not Unicode
  that UTF-8 can encode: it broke file names, ``turns.csv`` and the JSON
  answer itself (500s in issue 26). Any string, key or value, holding one is
  refused, and :func:`check_encodable` does the same for multipart fields
  (a ``charset=utf-7`` part decodes ``+2AA-`` to one).

Query and path parameters cannot carry one: they are percent-decoded as UTF-8
with replacement characters (uvicorn, Starlette).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.serving.errors import describe_validation

MAX_DEPTH = 32  # nesting levels; our bodies use 3 at most
MAX_CONTAINERS = 10_000  # "[" and "{" bytes in a body
MAX_COMMAS = 100_000  # "," bytes: bounds how many values a body can make
SMALL_BODY_BYTES = 64 * 1024  # the default cap of routes without audio in their JSON

_SURROGATE = re.compile("[\ud800-\udfff]")
Model = TypeVar("Model", bound=BaseModel)

NOT_JSON = "The body is not valid JSON. / 请求体不是有效的 JSON。"
TOO_DEEP = (
    f"The JSON body is nested too deeply (more than {MAX_DEPTH} levels). / JSON 请求体嵌套过深（超过 {MAX_DEPTH} 层）。"
)
TOO_MANY = "The JSON body holds too many values. / JSON 请求体包含的值过多。"


def _too_large(max_bytes: int) -> E2VError:
    # 413 like every other body over its cap (one code, one status: serving/errors.py), not a 422.
    return E2VError(
        "file_too_large",
        f"The JSON body is larger than {max_bytes // 1024} KB. / JSON 请求体超过 {max_bytes // 1024} KB。",
    )


def _place(path: tuple) -> str:
    """``names.left`` / ``items[3]``; keys shown with their escapes, so that the message itself encodes."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part.isidentifier() and part.isascii() else json.dumps(part)
            out += ("." if out else "") + text
    return out or "the body"


def _unencodable(where: str) -> E2VError:
    return E2VError(
        "bad_request",
        f"The text at {where} cannot be encoded as UTF-8 (a lone surrogate such as \\ud800); send valid Unicode. "
        f"/ {where} 处的文本无法编码为 UTF-8（含孤立的代理字符），请发送有效的 Unicode 文本。",
    )


def _bad_text(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None  # isascii() is O(1) in CPython


def check_encodable(value: Any, path: tuple = ()) -> None:
    """Raise ``bad_request`` when a string anywhere in ``value`` (keys too) holds a lone surrogate.

    Also checks the depth (:data:`MAX_DEPTH`). Walks iteratively, so no value can exhaust the stack.

    Args:
        value: parsed JSON, or a list of ``(name, value)`` pairs of a form.
        path: where ``value`` sits, for the message.

    Raises:
        E2VError: ``bad_request``.
    """
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if len(where) > MAX_DEPTH:
            raise E2VError("bad_request", TOO_DEEP)
        if isinstance(item, str):
            if _bad_text(item):
                raise _unencodable(_place(where))
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and _bad_text(key):
                    raise _unencodable(_place(where) + " (a key)")
                stack.append((sub, (*where, key)))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, (*where, i)) for i, sub in enumerate(item))


def check_form(form) -> None:
    """:func:`check_encodable` for a parsed multipart or urlencoded form: field names, values, file names.

    Raises:
        E2VError: ``bad_request`` naming the field.
    """
    for name, value in form.multi_items():
        text = value if isinstance(value, str) else (getattr(value, "filename", None) or "")
        if _bad_text(name) or _bad_text(text):
            raise _unencodable(f"form field {json.dumps(name)}")


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body within the bounds above (blocking: call it in a worker thread for large bodies).

    Raises:
        E2VError: ``bad_request``: not JSON, too many values, too deep, text that cannot be encoded.
    """
    if raw.count(b"[") + raw.count(b"{") > MAX_CONTAINERS or raw.count(b",") > MAX_COMMAS:
        raise E2VError("bad_request", TOO_MANY)
    try:
        value = json.loads(raw)
    except RecursionError:  # "[" * 5000: json stops at the interpreter's recursion limit
        raise E2VError("bad_request", TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8/16/32
        raise E2VError("bad_request", NOT_JSON) from None
    check_encodable(value)
    return value


async def read_json(request: Request, max_bytes: int | None = SMALL_BODY_BYTES) -> Any:
    """The request's body as JSON, read and parsed within bounds.

    Args:
        request: the request.
        max_bytes: most body bytes read (None: as many as the guards let in, e.g. recognize's base64).

    Raises:
        E2VError: ``file_too_large`` (over ``max_bytes``); ``bad_request`` (not JSON, too many values, too deep,
            unencodable text).
    """
    if max_bytes is None:
        raw = await request.body()
    else:
        declared = request.headers.get("content-length", "")  # too large: refused before a byte is read
        if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
            raise _too_large(max_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        raw = b"".join(chunks)
    return await anyio.to_thread.run_sync(parse_json, raw)


async def read_model(request: Request, model: type[Model], max_bytes: int | None = SMALL_BODY_BYTES) -> Model:
    """The request's JSON body (:func:`read_json`) validated as ``model``.

    Raises:
        E2VError: ``file_too_large`` (over ``max_bytes``); ``bad_request`` (the body, or a field, is not what
            ``model`` says).
    """
    value = await read_json(request, max_bytes)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise E2VError("bad_request", describe_validation(exc.errors())) from None


def json_request_body(model: type[BaseModel]) -> dict:
    """``openapi_extra`` documenting ``model`` as a route's JSON body (the route reads it with :func:`read_model`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
