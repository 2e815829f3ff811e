"""Training jobs own an uploaded set's folder: it is removed when the job ends (done or failed) or cannot start."""

from __future__ import annotations

import shutil

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.train_head import TrainOptions
from emotion2vec_webui.jobs.train_jobs import TrainJobs
from tests.head_data import make_set, started_service


@pytest.fixture(scope="module")
def jobs(engine, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_jobs")
    with started_service(engine, tiny_model_dir, root) as service:
        yield TrainJobs(service), make_set(root / "set", per_class=4, seed=5)


def test_a_done_job_removes_its_upload(jobs, tmp_path):
    registry, data = jobs
    upload = tmp_path / "upload"
    shutil.copytree(data, upload / "set")
    job = registry.wait(registry.start(str(upload / "set"), "owned", TrainOptions(), cleanup=str(upload)).id, 120)
    assert job.state == "done", job.error
    assert not upload.exists()


def test_a_failed_job_removes_its_upload(jobs, tmp_path):
    registry, _ = jobs
    upload = tmp_path / "upload"
    (upload / "empty").mkdir(parents=True)  # no labelled audio: the job fails
    job = registry.wait(registry.start(str(upload / "empty"), "failing", TrainOptions(), cleanup=str(upload)).id, 120)
    assert job.state == "failed" and job.error["code"] == "bad_request", job.error
    assert not upload.exists()


def test_an_upload_is_removed_when_its_job_cannot_start(jobs, tmp_path):
    registry, data = jobs
    first = registry.start(str(data), "busy", TrainOptions())  # holds the one training slot
    upload = tmp_path / "upload"
    shutil.copytree(data, upload)
    try:
        with pytest.raises(E2VError) as refused:
            registry.start(str(upload), "second", TrainOptions(), cleanup=str(upload))
        assert refused.value.code == "overloaded"
        assert not upload.exists()
    finally:
        assert registry.wait(first.id, 120).state == "done"
