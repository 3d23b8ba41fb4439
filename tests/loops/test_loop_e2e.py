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
from tests.loops.conftest import add_synthetic_samples, tiny_yaml

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
    # The deploy job is marked succeeded just after it moves the pointer: wait for both.
    wait_for(
        lambda: (
            Loop.objects.get(pk=loop.pk).deployed_version_id is not None
            and Job.objects.filter(kind="deploy", status=JobStatus.SUCCEEDED).exists()
        ),
        live_portal,
        what="train → evaluate → deploy",
    )
    kinds = list(Job.objects.order_by("id").values_list("kind", "status", "trigger"))[:3]
    assert kinds == [
        ("train", "succeeded", "manual"),
        ("evaluate", "succeeded", "rule"),
        ("deploy", "succeeded", "rule"),
    ]
    v1 = ModelVersion.objects.get()
    assert v1.stage == "deployed" and v1.gate_passed is True
    assert v1.deployments.get().started_by.startswith("gate passed in evaluation job")

    # New edge data, and a gate v2 cannot pass: it stays a candidate, with the reason.
    Loop.objects.filter(pk=loop.pk).update(gate_min_gain={"f1": 0.5})
    add_synthetic_samples(loop.dataset, 4, domain="edge", split="train", source="device", seed=9)
    services.start_training(loop, user=admin_user)
    wait_for(
        lambda: ModelVersion.objects.filter(number=2, gate_passed__isnull=False).exists(),
        live_portal,
        what="v2 trained and evaluated",
    )
    v2 = ModelVersion.objects.get(number=2)
    assert v2.gate_passed is False and v2.stage == "candidate"
    assert services.version_failures(v2)[0].startswith("Δf1 ")
    assert Loop.objects.get(pk=loop.pk).deployed_version == v1

    # Forced deploy with a reason, then one-click rollback, both through the worker.
    forced = services.start_deploy(v2, user=admin_user, action="force", reason="try it on line 3")
    # The pointer moves before the job records its end; a rollback started in between is refused
    # (409, "already running"), as it should be: wait for the job itself.
    wait_for(lambda: Job.objects.get(pk=forced.pk).status == JobStatus.SUCCEEDED, live_portal)
    assert Loop.objects.get(pk=loop.pk).deployed_version_id == v2.pk
    services.start_deploy(v1, user=admin_user, action="rollback")
    wait_for(lambda: Loop.objects.get(pk=loop.pk).deployed_version_id == v1.pk, live_portal)
    history = list(loop.deployments.order_by("id").values_list("action", "version__number"))
    assert history == [("deploy", 1), ("force", 2), ("rollback", 1)]


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
