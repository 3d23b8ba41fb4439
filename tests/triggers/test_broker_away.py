"""The broker away at the moment a rule fires: the firing is not used up, the next evaluation
starts the job."""

from datetime import timedelta

import pytest
import redis

from apps.jobs import services as jobs
from apps.jobs.models import Job
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision, Firing
from tests.triggers.conftest import T0, label, make_rule, set_anchor
from tests.triggers.test_precision import deploy, rule_for


@pytest.fixture
def broker(monkeypatch):
    """`broker.up = False` makes every enqueue fail as it does while Redis restarts."""

    class Broker:
        up = True
        sent: list[int] = []

    def send_task(job_id, task_name, queue):
        if not Broker.up:
            raise redis.ConnectionError("Error 111 connecting to redis.sock. Connection refused.")
        Broker.sent.append(job_id)

    monkeypatch.setattr(jobs, "send_task", send_task)
    return Broker


def evaluate(rule, now, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return evaluate_rule(rule.pk, now=now)


def test_a_sample_count_firing_whose_job_never_queued_fires_again(
    loop, broker, django_capture_on_commit_callbacks
):
    rule = make_rule(loop, kind="sample_count", min_samples=1, cooldown_minutes=60)
    label(loop, 1)
    broker.up = False
    with pytest.raises(jobs.BrokerUnavailable):
        evaluate(rule, T0, django_capture_on_commit_callbacks)
    lost = Job.objects.get()
    assert lost.status == "failed" and lost.message.startswith("Not started")

    broker.up = True
    # Another evaluator got the rule between the commit and the failed enqueue: job still queued.
    Job.objects.filter(pk=lost.pk).update(status="queued")
    assert evaluate(rule, T0 + timedelta(seconds=5), django_capture_on_commit_callbacks).reason == (
        "cooldown"
    )
    Job.objects.filter(pk=lost.pk).update(status="failed")
    decision = evaluate(rule, T0 + timedelta(seconds=10), django_capture_on_commit_callbacks)
    assert decision.verdict == "fired" and decision.job != lost
    assert broker.sent == [decision.job.pk]
    released = Decision.objects.get(reason="cannot_start")
    assert released.job == lost and f"job #{lost.pk} was never started" in released.message
    assert Firing.objects.get().job == decision.job
    rule.refresh_from_db()
    assert (rule.fire_count, rule.last_fired_at) == (1, T0 + timedelta(seconds=10))


def test_a_time_slot_whose_job_never_queued_is_due_again(
    loop, broker, django_capture_on_commit_callbacks
):
    rule = make_rule(loop, kind="time", every=30)
    set_anchor(rule, T0)
    slot = T0 + timedelta(minutes=30)
    broker.up = False
    with pytest.raises(jobs.BrokerUnavailable):
        evaluate(rule, slot, django_capture_on_commit_callbacks)
    broker.up = True
    decision = evaluate(rule, slot + timedelta(seconds=10), django_capture_on_commit_callbacks)
    assert decision.verdict == "fired" and decision.inputs["slot"] == slot.isoformat()
    assert broker.sent == [decision.job.pk]
    # The slot is used now: nothing more until the next one.
    later = evaluate(rule, slot + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert later.reason == "not_due"
    assert Job.objects.filter(status="queued").count() == 1


def test_a_measurement_whose_job_never_queued_is_started_again(loop):
    loop, _ = deploy(loop)
    rule = rule_for(loop)
    label(loop, 3, source="device", split="eval")
    evaluate_rule(rule.pk, now=T0)
    first = Job.objects.get(kind="evaluate")
    Job.objects.filter(pk=first.pk).update(
        status="failed",
        message=f"{jobs.NOT_QUEUED} (ConnectionError: refused). Try again.",
        result={"not_queued": True},
    )
    decision = evaluate_rule(rule.pk, now=T0 + timedelta(seconds=10))
    assert (decision.verdict, decision.reason) == ("measuring", "measuring")
    assert decision.job != first and decision.job.status == "queued"
    assert decision.inputs["unqueued_job"] == first.pk
