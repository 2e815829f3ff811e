"""Load and parallelism against the reliability server (short runs; the long one is benchmarks/load_test.py).

Overload (a queue of 2) is tested in tests/serving/test_api.py, whose server runs with E2V_MAX_QUEUE=2.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.load_test import make_clips, parallel_burst, run_load


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("load_clips"))


def test_mixed_rest_and_gradio_clients_under_load(reliability_server, clips):
    srv = reliability_server
    report = run_load(srv.url, srv.outputs, clips, rest_clients=4, gradio_clients=2, duration_s=8)
    summary = report.summary()
    print("\nload:", json.dumps(summary))
    assert not report.errors, report.errors[:10]
    assert summary["ok"] > 0 and {c.kind for c in report.ok} == {"rest", "gradio"}
    assert not report.incomplete_runs, report.incomplete_runs[:10]
    assert len({c.run_id for c in report.ok}) == len(report.ok)  # one folder per success


def test_100_parallel_requests_give_100_complete_run_folders(reliability_server, clips):
    srv = reliability_server
    result = parallel_burst(srv.url, srv.outputs, clips[-1], 100)
    print("\n100 parallel:", json.dumps(result))
    assert result["ok"] == result["distinct_run_ids"] == result["complete_folders"] == 100, result
    assert result["leftover_temp_dirs"] == 0
