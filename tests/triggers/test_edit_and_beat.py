"""An edit takes effect without a restart; the beat task evaluates every rule at its period."""

from datetime import timedelta

from apps.jobs.models import Job
from apps.triggers import services
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision
from tests.triggers.conftest import T0, label, make_rule, set_anchor
from worker.tasks.triggers import check_trigger_rules


def test_an_edit_takes_effect_at_the_next_evaluation(loop):
    """No restart, no cache: the evaluator reads the rule as it is now."""
    rule = make_rule(loop, kind="sample_count", min_samples=10)
    label(loop, 4)
    assert evaluate_rule(rule.pk, now=T0).verdict == "waiting"
    services.update_rule(rule, {"min_samples": 4})
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"
    Job.objects.update(status="succeeded")
    services.update_rule(rule, {"enabled": False, "min_samples": 1})
    assert evaluate_rule(rule.pk, now=T0).reason == "disabled"


def test_an_edit_through_the_api_is_used_by_the_next_beat(client_for, admin_user, loop):
    rule = make_rule(loop, kind="sample_count", min_samples=10)
    label(loop, 2)
    check_trigger_rules()
    assert not Job.objects.exists()
    response = client_for(admin_user).patch(
        f"/api/v1/trigger-rules/{rule.pk}/", {"min_samples": 2}, content_type="application/json"
    )
    assert response.status_code == 200
    check_trigger_rules()  # the worker's beat task, same process: nothing was reloaded
    assert Job.objects.get().params["rule_id"] == rule.pk


def test_a_schedule_edit_restarts_the_schedule_from_now(loop):
    rule = make_rule(loop, kind="time", every=60)
    set_anchor(rule, T0 - timedelta(minutes=59))
    services.update_rule(rule, {"every": 30})
    rule.refresh_from_db()
    assert rule.anchor_at > T0  # re-anchored at the edit (now), so nothing fires at T0 + 1 min
    assert evaluate_rule(rule.pk, now=T0 + timedelta(minutes=1)).verdict == "waiting"


def test_beat_evaluates_every_rule_and_one_broken_rule_stops_no_other(loop, monkeypatch):
    from apps.triggers import evaluator

    broken = make_rule(loop, kind="sample_count", min_samples=1, name="broken")
    working = make_rule(loop, kind="sample_count", min_samples=1, name="working")
    disabled = make_rule(loop, kind="time", every=5, enabled=False, name="off")
    label(loop, 1)
    real = evaluator.judge_sample_count

    def judge(rule, now):
        if rule.pk == broken.pk:
            raise RuntimeError("boom")
        return real(rule, now)

    monkeypatch.setitem(evaluator.JUDGES, "sample_count", judge)
    assert check_trigger_rules() == 2
    assert Decision.objects.get(rule=working).verdict == "fired"
    assert Decision.objects.get(rule=disabled).reason == "disabled"
    assert not Decision.objects.filter(rule=broken).exists()


def test_the_beat_period_is_the_setting():
    from django.conf import settings

    from ilportal.celery import app

    entry = app.conf.beat_schedule["check-trigger-rules"]
    assert entry["task"] == "ilportal.check_trigger_rules"
    assert entry["schedule"] == float(settings.TRIGGER_CHECK_PERIOD_S) == 10.0


def test_the_period_comes_from_the_environment(tmp_path):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "TRIGGER_CHECK_PERIOD_S": "3",
        "DJANGO_SETTINGS_MODULE": "ilportal.settings",
        "VAR_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ilportal.celery import app; "
            "print(app.conf.beat_schedule['check-trigger-rules']['schedule'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "3.0"
