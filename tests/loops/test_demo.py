import pytest

from apps.jobs import services as jobs
from apps.jobs.models import Job
from apps.loops.demo import DEMO_STEPS, create_demo_loop

pytestmark = pytest.mark.django_db


def test_the_demo_loop_is_created_once_and_its_first_model_starts_training(
    synthetic_dataset, monkeypatch
):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    loop = create_demo_loop(synthetic_dataset)
    assert f"max_iteration: {DEMO_STEPS}" in loop.algorithm_yaml
    job = Job.objects.get()
    assert (job.kind, job.trigger, job.started_by) == ("train", "rule", "first start of the portal")
    assert create_demo_loop(synthetic_dataset) is None
    assert Job.objects.count() == 1
