"""Bad input names its field, and nothing half-valid is ever saved."""

from datetime import time

import pytest

from apps.triggers import services
from apps.triggers.models import TriggerRule

PRECISION = {
    "name": "f1 low",
    "kind": "precision",
    "metric": "f1",
    "comparison": "below",
    "threshold": 0.7,
    "min_fresh_samples": 20,
}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "t", "kind": "time", "cron": "61 * * * *"}, "cron", "Invalid cron"),
        ({"name": "t", "kind": "time", "cron": "* * *"}, "cron", "five fields"),
        ({"name": "t", "kind": "time", "cron": "0 2 * * *", "every": 5}, "cron", "not both"),
        ({"name": "t", "kind": "time"}, "every", "interval"),
        ({"name": "t", "kind": "time", "every": 0}, "every", "above 0"),
        ({"name": "t", "kind": "time", "every": -5}, "every", "above 0"),
        (
            {
                "name": "t",
                "kind": "time",
                "every": 5,
                "window_start": time(2),
                "window_end": time(2),
            },
            "window_end",
            "equals its start",
        ),
        ({"name": "t", "kind": "time", "every": 5, "window_start": time(2)}, "window_end", "both"),
        (
            {"name": "t", "kind": "time", "every": 5, "time_zone": "Mars/Olympus"},
            "time_zone",
            "IANA",
        ),
        ({"name": "t", "kind": "time", "every": 10**12}, "every", "at most"),
        ({"name": "t", "kind": "time", "every": 9000, "every_unit": "hours"}, "every", "at most"),
        (
            {"name": "t", "kind": "time", "every": 5, "cooldown_minutes": 10**9},
            "cooldown_minutes",
            "a year",
        ),
        ({"name": "t", "kind": "time", "cron": "0 0 30 2 *"}, "cron", "Invalid cron"),
        ({"name": "t", "kind": "time", "cron": "@daily"}, "cron", "five fields"),
        ({"name": "t", "kind": "time", "cron": "R R * * *"}, "cron", "random (R)"),
        ({"name": "t", "kind": "time", "cron": "r 2 * * *"}, "cron", "random (R)"),
        ({"name": "t", "kind": "time", "cron": "R/5 * * * *"}, "cron", "random (R)"),
        ({"name": "t", "kind": "time", "cron": "R(0-5) 2 * * *"}, "cron", "random (R)"),
        (
            {
                "name": "t",
                "kind": "time",
                "cron": "0 3 * * *",
                "window_start": time(2),
                "window_end": time(2, 30),
            },
            "window_start",
            "never fire",
        ),
        ({"name": "t", "kind": "sample_count"}, "min_samples", "Give"),
        ({"name": "t", "kind": "sample_count", "min_samples": 10**10}, "min_samples", "at most"),
        ({"name": "t", "kind": "sample_count", "min_samples": 0}, "min_samples", "above 0"),
        (
            {"name": "t", "kind": "sample_count", "min_samples": 5, "class_name": "dog"},
            "class_name",
            "not a class",
        ),
        ({**PRECISION, "threshold": 1.5}, "threshold", "[0, 1]"),
        ({**PRECISION, "threshold": 0}, "threshold", "[0, 1]"),
        ({**PRECISION, "threshold": float("nan")}, "threshold", "[0, 1]"),
        ({**PRECISION, "threshold": None}, "threshold", "Give"),
        ({**PRECISION, "metric": "accuracy"}, "metric", "produces"),
        ({**PRECISION, "metric": "mAP", "class_name": "vest"}, "metric", "no per-class mAP"),
        ({**PRECISION, "comparison": "above"}, "comparison", "below"),
        ({**PRECISION, "min_fresh_samples": 0}, "min_fresh_samples", "above 0"),
        ({**PRECISION, "cooldown_minutes": -1}, "cooldown_minutes", "0 or more"),
        ({"name": " ", "kind": "time", "every": 5}, "name", "name"),
        ({"name": "t", "kind": "sometimes"}, "kind", "Choose"),
        ({"name": "t", "kind": "time", "every": 5, "action": "deploy"}, "action", "Choose"),
    ],
)
def test_bad_input_names_the_field(loop, data, field, words):
    with pytest.raises(services.RuleInvalid) as caught:
        services.create_rule(loop, data)
    assert field in caught.value.errors, caught.value.errors
    assert words in caught.value.errors[field]
    assert not TriggerRule.objects.exists()


@pytest.mark.parametrize("cron", ["0 2 * MAR THU", "0 2 L * *", "0 2 * * 5#3", "0 2 * * sun"])
def test_month_and_weekday_names_and_deterministic_extensions_are_valid(loop, cron):
    rule = services.create_rule(loop, {"name": "t", "kind": "time", "cron": cron})
    assert rule.cron == cron


def test_a_failed_update_keeps_the_stored_rule(loop):
    rule = services.create_rule(loop, {"name": "nightly", "kind": "time", "cron": "0 2 * * *"})
    with pytest.raises(services.RuleInvalid):
        services.update_rule(rule, {"cron": "0 25 * * *", "name": "renamed"})
    rule.refresh_from_db()
    assert (rule.name, rule.cron) == ("nightly", "0 2 * * *")


def test_fields_the_kind_does_not_use_are_not_stored(loop):
    rule = services.create_rule(
        loop, {"name": "n", "kind": "sample_count", "min_samples": 5, "cron": "0 2 * * *"}
    )
    assert rule.cron == "" and rule.metric == ""
    rule = services.update_rule(rule, {"kind": "time", "every": 15})
    assert rule.min_samples is None and rule.every == 15


def test_per_class_precision_and_wrapping_window_are_valid(loop):
    rule = services.create_rule(
        loop,
        {
            **PRECISION,
            "class_name": "vest",
            "metric": "recall",
            "comparison": "drop",
            "threshold": 0.05,
            "window_start": time(22),
            "window_end": time(2),
            "time_zone": "Europe/Berlin",
        },
    )
    assert (rule.class_name, rule.comparison, rule.time_zone) == ("vest", "drop", "Europe/Berlin")


@pytest.mark.parametrize("clock", ["00:00", "02:30", "05:00", "21:59", "23:00"])
def test_a_minute_interval_with_an_evening_window_is_valid_at_any_time_of_day(
    loop, monkeypatch, clock
):
    """1,000 one-minute slots cover 16 hours: from 02:30 they never reached a window opening at
    22:00, and the rule was refused as one that "would never fire"."""
    from datetime import UTC, datetime

    hour, minute = map(int, clock.split(":"))
    monkeypatch.setattr(
        services.timezone, "now", lambda: datetime(2026, 6, 1, hour, minute, tzinfo=UTC)
    )
    rule = services.create_rule(
        loop,
        {"name": "t", "kind": "time", "every": 1, "window_start": time(22), "window_end": time(2)},
    )
    assert (rule.every, rule.window_start) == (1, time(22))
