"""The loop through a real Celery worker, Redis and the database (PostgreSQL in CI)."""

import os
import signal
import time

import pytest
from django.core.files.storage import default_storage

from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.loops import services
from apps.loops.models import Loop, ModelVersion
from tests.loops.conftest import tiny_yaml

pytestmark = pytest.mark.slow


def wait_for(condition, portal, timeout_s=180, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{portal.read_logs()[-6000:]}")


def test_train_evaluates_and_auto_deploys_through_the_worker(live_portal, tiny_loop, admin_user):
    Loop.objects.filter(pk=tiny_loop.pk).update(
        auto_evaluate=True, auto_deploy=True, gate_min_metrics={"f1": 0.0}
    )
    loop = Loop.objects.get(pk=tiny_loop.pk)
    services.start_training(loop, user=admin_user)
    wait_for(
        lambda: Loop.objects.get(pk=loop.pk).deployed_version_id is not None,
        live_portal,
        what="train → evaluate → deploy",
    )
    kinds = list(Job.objects.order_by("id").values_list("kind", "status", "trigger"))
    assert kinds == [
        ("train", "succeeded", "manual"),
        ("evaluate", "succeeded", "rule"),
        ("deploy", "succeeded", "rule"),
    ]
    version = ModelVersion.objects.get()
    assert version.stage == "deployed" and version.gate_passed is True
    assert version.deployments.get().started_by.startswith("gate passed in evaluation job")


def test_killing_the_worker_mid_training_leaves_nothing_half_done(
    live_portal, tiny_loop, admin_user
):
    Loop.objects.filter(pk=tiny_loop.pk).update(algorithm_yaml=tiny_yaml(steps=5000))
    loop = Loop.objects.get(pk=tiny_loop.pk)
    job = services.start_training(loop, user=admin_user)
    wait_for(
        lambda: Job.objects.get(pk=job.pk).progress >= 6,
        live_portal,
        what="training to make progress",
    )
    worker = live_portal.processes["worker"]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(2.5)

    assert jobs.fail_stale_jobs(2) == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert not ModelVersion.objects.exists()
    assert Loop.objects.get(pk=loop.pk).deployed_version is None
    assert not default_storage.exists(f"models/loop-{loop.pk}") or default_storage.listdir(
        f"models/loop-{loop.pk}"
    ) == ([], [])
