"""The precision trigger with a real evaluation job on tiny data (TensorFlow; slow).

Train v1 and deploy it; fresh labeled edge samples arrive; the rule starts the evaluation job
restricted to them; its measured F1 decides, against a bound just above and just below it."""

import pytest

from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import run_job
from apps.loops import services as loops
from apps.loops.evaluation import run_evaluation
from apps.loops.models import Evaluation, Loop, ModelVersion
from apps.loops.training import run_training
from apps.triggers import services
from apps.triggers.evaluator import evaluate_rule
from tests.loops.conftest import add_synthetic_samples

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


def run(job: Job, body) -> Job:
    run_job(job.pk, "test-worker", body)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.message, job.log)
    return job


def test_precision_rule_measures_fresh_samples_and_fires_below_the_bound(tiny_loop, admin_user):
    run(loops.start_training(tiny_loop, user=admin_user), run_training)
    v1 = ModelVersion.objects.get()
    loops.move_deployed_pointer(v1.pk, action="deploy", started_by="test", reason="", job_id=None)
    loop = Loop.objects.get(pk=tiny_loop.pk)
    rule = services.create_rule(
        loop,
        {
            "name": "f1 floor",
            "kind": "precision",
            "metric": "f1",
            "comparison": "below",
            "threshold": 1.0,
            "min_fresh_samples": 4,
        },
    )
    fresh = add_synthetic_samples(
        loop.dataset, 4, domain="edge", split="eval", source="device", seed=31
    )
    assert fresh == 4
    decision = evaluate_rule(rule.pk)
    assert decision.verdict == "measuring"
    measuring = run(decision.job, run_evaluation)
    assert len(measuring.params["sample_ids"]) == 4
    assert not Evaluation.objects.exists()  # a measurement leaves the version's record alone
    measured = measuring.result["metrics"]["f1"]
    assert 0.0 <= measured <= 1.0
    decision = evaluate_rule(rule.pk)
    assert decision.inputs["value"] == pytest.approx(measured)
    expected = "fired" if measured < 1.0 else "waiting"
    assert decision.verdict == expected
    Job.objects.filter(kind="train", status="queued").update(status="cancelled")

    # The same measurement never fires twice; a bound at the value is not "below" it.
    services.update_rule(rule, {"threshold": max(measured, 1e-6)})
    decision = evaluate_rule(rule.pk)
    assert decision.inputs["value"] == pytest.approx(measured)
    if measured >= 1e-6:
        assert (decision.verdict, decision.reason) == ("waiting", "metric_ok")
    else:
        assert (decision.verdict, decision.reason) == ("suppressed", "already_fired")
    assert Job.objects.filter(kind="evaluate").count() == 1


def test_drop_rule_compares_a_real_measurement_with_the_value_at_deploy(tiny_loop, admin_user):
    run(loops.start_training(tiny_loop, user=admin_user), run_training)
    v1 = ModelVersion.objects.get()
    run(loops.start_evaluation(v1, user=admin_user), run_evaluation)  # the value at deploy
    at_deploy = Evaluation.objects.get(version=v1, evaluation_set="edge").metrics["recall"]
    loops.move_deployed_pointer(v1.pk, action="deploy", started_by="test", reason="", job_id=None)
    loop = Loop.objects.get(pk=tiny_loop.pk)
    rule = services.create_rule(
        loop,
        {
            "name": "recall drop",
            "kind": "precision",
            "metric": "recall",
            "comparison": "drop",
            "threshold": 0.05,
            "min_fresh_samples": 4,
        },
    )
    add_synthetic_samples(loop.dataset, 4, domain="edge", split="train", source="device", seed=41)
    run(evaluate_rule(rule.pk).job, run_evaluation)
    decision = evaluate_rule(rule.pk)
    measured = Job.objects.get(kind="evaluate", params__has_key="sample_ids").result["metrics"]
    assert decision.inputs["at_deploy"] == pytest.approx(at_deploy)
    assert decision.inputs["value"] == pytest.approx(measured["recall"])
    dropped = at_deploy - measured["recall"] >= 0.05
    assert decision.verdict == ("fired" if dropped else "waiting")
