"""An edit takes effect without a restart; the beat task evaluates every rule at its period."""

from datetime import timedelta

import pytest

from apps.jobs.models import Job
from apps.triggers import services
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision, TriggerRule
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


def test_edits_of_different_fields_from_stale_copies_all_apply(loop):
    """Concurrent PATCHes: each request loaded the rule before the others saved; none may write
    back the stale values of fields it did not change."""
    rule = make_rule(loop, kind="sample_count", min_samples=10)
    copies = [TriggerRule.objects.get(pk=rule.pk) for _ in range(4)]
    edits = [{"min_samples": 20}, {"enabled": False}, {"cooldown_minutes": 7}, {"name": "renamed"}]
    for copy, edit in zip(copies, edits, strict=True):
        services.update_rule(copy, edit)
    rule.refresh_from_db()
    assert (rule.min_samples, rule.enabled, rule.cooldown_minutes, rule.name) == (
        20,
        False,
        7,
        "renamed",
    )


def test_an_edit_is_checked_against_the_rule_as_stored_now(loop):
    """The combined result is validated: a stale copy cannot sneak in a field the kind of the
    stored rule does not allow."""
    rule = make_rule(loop, kind="sample_count", min_samples=10)
    stale = TriggerRule.objects.get(pk=rule.pk)
    services.update_rule(rule, {"kind": "time", "every": 30})
    with pytest.raises(services.RuleInvalid) as caught:
        services.update_rule(stale, {"every": 0})
    assert "every" in caught.value.errors
    rule.refresh_from_db()
    assert (rule.kind, rule.every) == ("time", 30)


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
