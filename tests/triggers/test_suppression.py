"""Every reason a rule whose condition holds does not fire is recorded; idle checks are counted."""

from datetime import time, timedelta

from apps.jobs.models import Job
from apps.loops.services import start_training
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision
from tests.triggers.conftest import T0, label, make_rule


def test_cooldown(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=1, cooldown_minutes=30)
    label(loop, 1)
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"
    Job.objects.update(status="failed")  # the training failed: the labels are still unseen
    # The same labels do not fire twice (a failing training is not retried in a loop) ...
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(minutes=31))
    assert (decision.verdict, decision.reason) == ("suppressed", "already_fired")
    label(loop, 1)  # ... new evidence does, after the cooldown
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(minutes=29))
    assert (decision.verdict, decision.reason) == ("suppressed", "cooldown")
    assert decision.inputs["cooldown_until"] == (T0 + timedelta(minutes=30)).isoformat()
    assert evaluate_rule(rule.pk, now=T0 + timedelta(minutes=30)).verdict == "fired"
    assert Job.objects.count() == 2


def test_already_fired_names_the_rule_s_own_job_and_what_became_of_it(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=1)
    label(loop, 1)
    job = evaluate_rule(rule.pk, now=T0).job
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(seconds=10))
    assert (decision.verdict, decision.reason, decision.job) == ("suppressed", "already_fired", job)
    assert f"it already started train job #{job.pk}, which is queued" in decision.message
    assert evaluate_rule(rule.pk, now=T0 + timedelta(seconds=20)) is None  # nothing new
    Job.objects.filter(pk=job.pk).update(status="failed", message="lost: its worker died")
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(seconds=30))  # the job's end is news
    assert decision.reason == "already_fired" and decision.job == job
    assert f"train job #{job.pk} failed (lost: its worker died)" in decision.message
    assert "a new label" in decision.message and "Another evaluator" not in decision.message


def test_job_running_is_the_reason_and_names_the_job(loop, admin_user):
    running = start_training(loop, user=admin_user)
    rule = make_rule(loop, kind="sample_count", min_samples=1)
    label(loop, 1)
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.reason) == ("suppressed", "job_running")
    assert decision.job == running and f"#{running.pk}" in decision.message
    assert Job.objects.count() == 1


def test_disabled(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=1, enabled=False)
    label(loop, 3)
    decision = evaluate_rule(rule.pk, now=T0)
    assert (decision.verdict, decision.reason) == ("suppressed", "disabled")
    assert decision.inputs["unseen_labels"] == 3
    assert not Job.objects.exists()


def test_outside_window_for_a_condition_rule(loop):
    """Sedna's semantics: window 02:00–20:00 AND the sample condition."""
    rule = make_rule(
        loop, kind="sample_count", min_samples=2, window_start=time(2), window_end=time(20)
    )
    label(loop, 2)
    decision = evaluate_rule(rule.pk, now=T0.replace(hour=21))
    assert (decision.verdict, decision.reason) == ("suppressed", "outside_window")
    assert evaluate_rule(rule.pk, now=T0.replace(hour=2)).verdict == "fired"


def test_evaluate_action_without_a_deployed_version(loop):
    rule = make_rule(loop, kind="time", every=1, action="evaluate")
    type(rule).objects.filter(pk=rule.pk).update(anchor_at=T0)
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(minutes=1))
    assert (decision.verdict, decision.reason) == ("waiting", "no_deployed_version")


def test_unchanged_evaluations_are_counted_not_logged(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=50)
    label(loop, 3)
    for second in range(10):
        evaluate_rule(rule.pk, now=T0 + timedelta(seconds=10 * second))
    assert Decision.objects.count() == 1
    rule.refresh_from_db()
    assert rule.idle_evaluations == 9
    label(loop, 47)
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(minutes=5))
    assert decision.verdict == "fired" and decision.idle_before == 9


def test_fire_now_ignores_condition_window_and_cooldown(loop, admin_user):
    rule = make_rule(
        loop,
        kind="sample_count",
        min_samples=100,
        window_start=time(2),
        window_end=time(3),
        cooldown_minutes=600,
    )
    from apps.triggers.evaluator import fire_now

    decision = fire_now(rule.pk, user=admin_user, now=T0)
    assert (decision.verdict, decision.cause) == ("fired", "manual")
    assert decision.job.trigger == "manual" and decision.job.created_by == admin_user
    again = fire_now(rule.pk, user=admin_user, now=T0)
    assert (again.verdict, again.reason) == ("suppressed", "job_running")
