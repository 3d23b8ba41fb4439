"""Two evaluators at the same moment start one job per firing (PostgreSQL, as in production).

Each evaluator runs in its own thread with its own database connection; a barrier releases them
together. The rule's row lock serialises them; the unique (rule, key) of Firing backs it up.
"""

import threading

import pytest
from django.db import connection, connections

from apps.jobs.models import Job
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision, Firing
from tests.triggers.conftest import T0, label, make_rule, set_anchor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL's row locks and concurrent writers (SQLite serialises every write); "
            "run with DATABASE_URL=postgres://… as CI does"
        )


@pytest.fixture
def unguarded_jobs(monkeypatch):
    """Jobs without a scope: the job table's one-active-job guard no longer applies, so only the
    rule's row lock and firing key stand between two evaluators and two jobs."""
    from apps.jobs.services import start_job
    from apps.triggers import evaluator

    def start_action(rule, cause, *, user=None):
        return start_job("train", trigger="rule", started_by=f"rule {rule.pk}", scope="")

    monkeypatch.setattr(evaluator, "start_action", start_action)


def run_concurrently(rule_id, *, evaluators, now):
    barrier = threading.Barrier(evaluators)
    errors = []

    def evaluate():
        try:
            barrier.wait(timeout=10)
            evaluate_rule(rule_id, now=now, cause="beat")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluate) for _ in range(evaluators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


@pytest.mark.parametrize("round_", range(3))
def test_two_beats_start_one_training_for_a_time_slot(loop, round_, unguarded_jobs):
    rule = make_rule(loop, kind="time", every=5, action="train")
    set_anchor(rule, T0)
    run_concurrently(rule.pk, evaluators=2, now=T0.replace(minute=5))
    assert Job.objects.count() == 1
    assert Firing.objects.filter(rule=rule).count() == 1
    assert Decision.objects.filter(rule=rule, verdict="fired").count() == 1


def test_many_event_workers_start_one_training_for_the_nth_label(loop, unguarded_jobs):
    rule = make_rule(loop, kind="sample_count", min_samples=3)
    label(loop, 3)
    run_concurrently(rule.pk, evaluators=6, now=T0)
    assert Job.objects.filter(kind="train").count() == 1
    assert Firing.objects.filter(rule=rule).count() == 1
    fired = Decision.objects.get(rule=rule, verdict="fired")
    assert fired.job == Job.objects.get()

    # With the job table's guard (as in production) the others name the job that runs.


def test_two_rules_of_one_loop_at_once_still_start_one_training(loop):
    """Different rules have different locks: the job table's scope refuses the second job."""
    count_rule = make_rule(loop, kind="sample_count", min_samples=1)
    time_rule = make_rule(loop, kind="time", every=1)
    set_anchor(time_rule, T0)
    label(loop, 1)
    barrier = threading.Barrier(2)

    def evaluate(rule_id):
        barrier.wait(timeout=10)
        try:
            evaluate_rule(rule_id, now=T0.replace(minute=1))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluate, args=(r.pk,)) for r in (count_rule, time_rule)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Job.objects.filter(kind="train").count() == 1
    reasons = sorted(Decision.objects.values_list("reason", flat=True))
    assert reasons == ["condition_met", "job_running"]
