"""Time rules: intervals, cron, daily windows that wrap midnight, time zones (frozen clock)."""

from datetime import time, timedelta

import pytest

from apps.jobs.models import Job
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision
from tests.triggers.conftest import T0, make_rule, set_anchor


def test_interval_fires_once_per_slot(loop):
    rule = make_rule(loop, kind="time", every=30)
    set_anchor(rule, T0)
    assert evaluate_rule(rule.pk, now=T0 + timedelta(minutes=29, seconds=59)).verdict == "waiting"
    fired = evaluate_rule(rule.pk, now=T0 + timedelta(minutes=30))
    assert fired.verdict == "fired" and fired.job.kind == "train"
    # The same slot, seen again by a later evaluation: nothing more.
    assert evaluate_rule(rule.pk, now=T0 + timedelta(minutes=31)).verdict == "waiting"
    assert Job.objects.count() == 1


def test_a_time_rule_without_condition_fires_in_hours(loop):
    rule = make_rule(loop, kind="time", every=2, every_unit="hours")
    set_anchor(rule, T0)
    assert evaluate_rule(rule.pk, now=T0 + timedelta(hours=1, minutes=59)).verdict == "waiting"
    assert evaluate_rule(rule.pk, now=T0 + timedelta(hours=2)).verdict == "fired"


def test_missed_slots_fire_once_not_in_a_burst(loop):
    rule = make_rule(loop, kind="time", every=10)
    set_anchor(rule, T0)
    assert evaluate_rule(rule.pk, now=T0 + timedelta(hours=5)).verdict == "fired"
    Job.objects.update(status="succeeded")
    assert evaluate_rule(rule.pk, now=T0 + timedelta(hours=5, minutes=1)).verdict == "waiting"
    assert Job.objects.count() == 1


def test_cron_in_a_time_zone(loop):
    # 02:30 every day in Berlin (UTC+2 in June) is 00:30 UTC.
    rule = make_rule(loop, kind="time", cron="30 2 * * *", time_zone="Europe/Berlin")
    set_anchor(rule, T0)
    next_day = T0.replace(hour=0, minute=29) + timedelta(days=1)
    assert evaluate_rule(rule.pk, now=next_day).verdict == "waiting"
    rule.refresh_from_db()
    assert rule.last_inputs["next"].startswith("2026-06-02T02:30:00+02:00")
    assert evaluate_rule(rule.pk, now=next_day + timedelta(minutes=1)).verdict == "fired"


def test_window_that_wraps_midnight(loop):
    """Window 22:00–02:00: 23:59 and 01:59 are inside, 02:00 and 21:59 outside."""
    rule = make_rule(loop, kind="time", every=1, window_start=time(22), window_end=time(2))
    day = T0.replace(hour=0, minute=0)
    cases = [
        (day.replace(hour=21, minute=59), "suppressed"),
        (day.replace(hour=23, minute=59), "fired"),
        (day.replace(hour=1, minute=59) + timedelta(days=1), "fired"),
        (day.replace(hour=2, minute=0) + timedelta(days=1), "suppressed"),
    ]
    for now, verdict in cases:
        Job.objects.update(status="succeeded")
        set_anchor(rule, now - timedelta(minutes=1))
        evaluate_rule(rule.pk, now=now)
        rule.refresh_from_db()
        assert rule.last_verdict == verdict, now
        if verdict == "suppressed":
            assert rule.last_reason == "outside_window"
            assert "22:00–02:00 UTC" in rule.last_inputs["window"]


def test_window_in_a_stated_time_zone(loop):
    # 02:00–20:00 in Tokyo (UTC+9): 18:00 UTC is 03:00 in Tokyo, inside; 12:00 UTC is 21:00.
    rule = make_rule(
        loop,
        kind="time",
        every=1,
        window_start=time(2),
        window_end=time(20),
        time_zone="Asia/Tokyo",
    )
    set_anchor(rule, T0 - timedelta(minutes=1))
    assert evaluate_rule(rule.pk, now=T0).reason == "outside_window"
    now = T0.replace(hour=18)
    set_anchor(rule, now - timedelta(minutes=1))
    assert evaluate_rule(rule.pk, now=now).verdict == "fired"


def test_slots_outside_the_window_are_skipped_not_saved_up(loop):
    rule = make_rule(loop, kind="time", every=60, window_start=time(2), window_end=time(20))
    set_anchor(rule, T0.replace(hour=20))
    evaluate_rule(rule.pk, now=T0.replace(hour=21))  # the 21:00 slot: outside
    # Inside the window later, but no new slot has come: no catch-up firing.
    assert evaluate_rule(rule.pk, now=T0.replace(hour=21, minute=30)).verdict == "waiting"
    assert not Job.objects.exists()
    assert Decision.objects.filter(reason="outside_window").count() == 1


@pytest.mark.parametrize(
    "late, fires",
    [
        # The beat, behind a backlog, reaches the 10:04 slot at 10:05:02: it fires.
        (timedelta(seconds=62), True),
        # After downtime, a slot from inside the window does not fire hours later outside it.
        (timedelta(hours=3), False),
    ],
)
def test_a_slot_in_the_window_is_judged_at_its_time_unless_reached_long_after(loop, late, fires):
    """Slot 10:04, window 10:00–10:05."""
    rule = make_rule(
        loop,
        kind="time",
        cron="4 10 * * *",
        window_start=time(10),
        window_end=time(10, 5),
    )
    slot = T0.replace(hour=10, minute=4)
    set_anchor(rule, slot - timedelta(hours=1))
    decision = evaluate_rule(rule.pk, now=slot + late)
    assert (decision.verdict == "fired") is fires, decision.message
    assert fires or decision.reason == "outside_window"
    assert Job.objects.exists() is fires


def test_cron_across_daylight_saving_changes(loop):
    """Spring: 02:30 does not exist in Berlin, the rule fires once at 03:00. Autumn: 02:30
    happens twice, the rule fires once."""
    from datetime import UTC, datetime

    rule = make_rule(loop, kind="time", cron="30 2 * * *", time_zone="Europe/Berlin")
    set_anchor(rule, datetime(2026, 3, 28, 12, tzinfo=UTC))
    spring = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert evaluate_rule(rule.pk, now=spring - timedelta(seconds=1)).verdict == "waiting"
    assert evaluate_rule(rule.pk, now=spring).verdict == "fired"
    Job.objects.update(status="succeeded")

    set_anchor(rule, datetime(2026, 10, 24, 12, tzinfo=UTC))
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert evaluate_rule(rule.pk, now=first).verdict == "fired"
    Job.objects.update(status="succeeded")
    for minutes in (59, 60, 61, 90):  # around 02:30 CET, the repeated local time
        evaluate_rule(rule.pk, now=first + timedelta(minutes=minutes))
    assert Job.objects.count() == 2
