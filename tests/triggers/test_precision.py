"""Precision rules: fresh labeled edge samples since deploy, a measuring evaluation job, the
metric vs a bound or vs its value at deploy time."""

import pytest

from apps.jobs.models import Job
from apps.loops.models import Evaluation, Loop
from apps.loops.services import move_deployed_pointer
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.listeners import on_deployed_pointer_moved
from tests.triggers.conftest import T0, label, make_rule, trained_version


def deploy(loop):
    version = trained_version(loop)
    move_deployed_pointer(version.pk, action="deploy", started_by="test", reason="", job_id=None)
    return Loop.objects.get(pk=loop.pk), version


def finish_measurement(f1, vest_recall=0.5):
    """What the evaluation job leaves when it measured the given samples."""
    job = Job.objects.get(kind="evaluate", status="queued")
    from apps.loops.training_data import labeled_pairs

    pairs = labeled_pairs(job.params["sample_ids"])
    job.status = "succeeded"
    job.result = {
        "metrics": {
            "f1": f1,
            "precision": 0.9,
            "recall": 0.8,
            "mAP": 0.4,
            "per_class": {"vest": {"precision": 0.7, "recall": vest_recall, "f1": 0.6}},
        },
        "pairs": [list(p) for p in pairs],
    }
    job.save()
    return job


def rule_for(loop, **fields):
    defaults = {
        "kind": "precision",
        "metric": "f1",
        "comparison": "below",
        "threshold": 0.7,
        "min_fresh_samples": 3,
    }
    return make_rule(loop, **{**defaults, **fields})


def test_no_deployed_version(loop):
    rule = rule_for(loop)
    assert evaluate_rule(rule.pk, now=T0).reason == "no_deployed_version"


def test_too_few_fresh_samples(loop):
    label(loop, 5, source="device", split="eval")  # before the deploy: not fresh
    loop, _ = deploy(loop)
    rule = rule_for(loop)
    label(loop, 2, source="device", split="eval")
    label(loop, 4, source="upload", split="eval")  # not from the edge
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.reason) == ("waiting", "too_few_samples")
    assert decision.message.startswith("2 of 3 fresh labeled edge samples")
    assert not Job.objects.exists()


@pytest.mark.parametrize(("f1", "verdict"), [(0.6999, "fired"), (0.7, "waiting")])
def test_bound_just_below_and_at(loop, f1, verdict):
    loop, version = deploy(loop)
    rule = rule_for(loop)
    fresh = label(loop, 3, source="device", split="train")
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == "measuring"
    measuring = decision.job
    assert measuring.kind == "evaluate" and measuring.params["version_id"] == version.pk
    assert sorted(measuring.params["sample_ids"]) == sorted(s.pk for s in fresh)
    # While it runs, the rule waits for it (and logs nothing new).
    assert evaluate_rule(rule.pk, now=T0) is None
    finish_measurement(f1)
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == verdict
    assert decision.inputs["value"] == f1
    if verdict == "fired":
        assert decision.job.kind == "train"
    # The metric is kept: evaluating again measures nothing more.
    evaluate_rule(rule.pk, now=T0)
    assert Job.objects.filter(kind="evaluate").count() == 1


@pytest.mark.parametrize(("recall", "verdict"), [(0.749, "fired"), (0.751, "waiting")])
def test_drop_since_deploy_for_one_class(loop, recall, verdict):
    loop, version = deploy(loop)
    Evaluation.objects.create(
        version=version,
        evaluation_set="edge",
        image_count=10,
        data_sha256="x",
        metrics={"f1": 0.9, "per_class": {"vest": {"recall": 0.8}}},
    )
    Evaluation.objects.filter(version=version).update(created_at=T0.replace(year=2020))
    rule = rule_for(loop, metric="recall", class_name="vest", comparison="drop", threshold=0.05)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    finish_measurement(0.5, vest_recall=recall)
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == verdict, decision.message
    assert decision.inputs["at_deploy"] == 0.8
    assert decision.inputs["drop"] == pytest.approx(0.8 - recall)


def test_drop_without_a_deploy_time_value_says_so(loop):
    loop, _ = deploy(loop)
    rule = rule_for(loop, comparison="drop", threshold=0.05)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    finish_measurement(0.1)
    assert evaluate_rule(rule.pk, now=T0).reason == "no_baseline"


def test_a_failed_measurement_is_an_error_and_not_retried_on_the_same_samples(loop):
    loop, _ = deploy(loop)
    rule = rule_for(loop)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    Job.objects.filter(kind="evaluate").update(status="failed", message="out of memory")
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.reason) == ("error", "measure_failed")
    assert "out of memory" in decision.message
    evaluate_rule(rule.pk, now=T0)
    assert Job.objects.filter(kind="evaluate").count() == 1


def test_measures_again_after_min_fresh_more_samples_and_after_a_deploy(loop):
    loop, _ = deploy(loop)
    rule = rule_for(loop)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    finish_measurement(0.9)
    assert evaluate_rule(rule.pk, now=T0).reason == "metric_ok"
    label(loop, 2, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    assert Job.objects.filter(kind="evaluate").count() == 1  # 2 more < 3: the value stands
    label(loop, 1, source="device", split="eval")
    assert evaluate_rule(rule.pk, now=T0).verdict == "measuring"
    finish_measurement(0.9)
    evaluate_rule(rule.pk, now=T0)
    # A new deploy: "since deploy" starts again, so the fresh set is empty.
    loop, _ = deploy(loop)
    on_deployed_pointer_moved(None, loop_id=loop.pk)
    assert evaluate_rule(rule.pk, now=T0).reason == "too_few_samples"


def test_a_measurement_that_cannot_start_because_one_just_finished_is_suppressed(loop, monkeypatch):
    """The measuring job's slot is taken at the INSERT and free at the lookup (that job just
    finished): the rule logs why and the next evaluation measures, rather than a crash."""
    from apps.triggers.evaluator import measure_scope
    from tests.factories import JobFactory

    loop, _ = deploy(loop)
    rule = rule_for(loop)
    label(loop, 3, source="device", split="eval")
    JobFactory(kind="evaluate", scope=measure_scope(loop), status="queued")
    monkeypatch.setattr("apps.jobs.services.active_job", lambda kind, scope: None)
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.reason) == ("suppressed", "cannot_start")
    assert "just ran; try again" in decision.message
    assert Job.objects.filter(kind="evaluate").count() == 1


def test_a_measurement_of_the_previous_deployed_version_is_never_reused(loop):
    """The deploy's reset is an on-commit receiver of the deploying process: a worker killed
    right after the commit loses it (here the callback never runs). The measurement of v1 must
    still not pass as v2's."""
    loop, first = deploy(loop)
    rule = rule_for(loop)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    finish_measurement(0.9)
    assert evaluate_rule(rule.pk, now=T0).reason == "metric_ok"

    loop, second = deploy(loop)
    label(loop, 3, source="device", split="eval")
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == "measuring", decision.message
    assert decision.job.params["version_id"] == second.pk != first.pk
    finish_measurement(0.1)
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.inputs["value"]) == ("fired", 0.1)
