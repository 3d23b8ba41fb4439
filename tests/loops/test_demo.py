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


def test_the_demo_loop_gets_a_sample_count_rule_once(synthetic_dataset, monkeypatch):
    """What the README promises: label a few hard examples and the demo loop retrains itself."""
    from apps.triggers.demo import DEMO_RULE_LABELS, add_demo_rule
    from apps.triggers.evaluator import evaluate_rules

    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    loop = create_demo_loop(synthetic_dataset)
    rule = add_demo_rule(loop)
    assert (rule.kind, rule.min_samples, rule.action, rule.enabled) == (
        "sample_count",
        DEMO_RULE_LABELS,
        "train",
        True,
    )
    assert add_demo_rule(loop) is None
    # While the first training runs, the rule does not start a second one.
    evaluate_rules([rule.pk], cause="beat")
    assert Job.objects.filter(kind="train").count() == 1
