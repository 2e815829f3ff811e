"""Which tests must share a pytest-xdist worker: those of one server, and those of one file.

With ``-n N --dist loadgroup`` (``./run.sh test -n 2``, docs/testing.md) each worker is a pytest session
of its own, so a session-scoped server would start once per worker that asks for it. Every test that
uses a server of ``tests/conftest.py`` (``shared_server`` and the fixtures built on it) therefore goes
to one group, every test on a server of ``tests/reliability/conftest.py`` to another, and every other
test to the group of its file, so that a module's own server or engine (module-scoped fixtures) is
built once too — what ``--dist loadfile`` would do, with the two server groups on top. Without xdist
the marks change nothing.

Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import pytest

# fixtures whose processes are shared by the whole run (tests/conftest.py), and by tests/reliability
SHARED_SERVERS = frozenset({"shared_server", "ui_server", "token_api_server", "onnx_only_server"})
RELIABILITY_SERVERS = frozenset({"reliability_server", "guarded_server", "url_server", "decode_server", "token_server"})


def group_of(fixturenames, path: str) -> str:
    """The worker group of a test that needs ``fixturenames`` (transitively) and lives in ``path``."""
    names = set(fixturenames)
    if names & SHARED_SERVERS:
        return "shared-servers"
    if names & RELIABILITY_SERVERS:
        return "reliability-servers"
    return path


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if not any(m.name == "xdist_group" for m in item.iter_markers()):
            item.add_marker(pytest.mark.xdist_group(group_of(item.fixturenames, item.location[0])))
