"""Verbs on trigger rules: check, create, update, delete, fire by hand.

`check_rule` is the one validation that the form and the API share: it returns the cleaned
field values or raises RuleInvalid with a message per field, so a rule is never saved half-valid.
"""

import itertools
from datetime import time, timedelta

from django.db import transaction
from django.utils import timezone

from apps.loops.models import Loop
from apps.triggers import schedule
from apps.triggers.conditions import OVERALL_METRICS, PER_CLASS_METRICS
from apps.triggers.models import (
    Comparison,
    IntervalUnit,
    RuleAction,
    RuleKind,
    TriggerRule,
)

EDITABLE_FIELDS = (
    "name",
    "kind",
    "action",
    "enabled",
    "every",
    "every_unit",
    "cron",
    "window_start",
    "window_end",
    "time_zone",
    "min_samples",
    "class_name",
    "metric",
    "comparison",
    "threshold",
    "min_fresh_samples",
    "cooldown_minutes",
)
SCHEDULE_FIELDS = ("kind", "every", "every_unit", "cron", "window_start", "window_end", "time_zone")
DEFAULTS = {
    "action": RuleAction.TRAIN,
    "enabled": True,
    "every": None,
    "every_unit": IntervalUnit.MINUTES,
    "cron": "",
    "window_start": None,
    "window_end": None,
    "time_zone": "UTC",
    "min_samples": None,
    "class_name": "",
    "metric": "",
    "comparison": "",
    "threshold": None,
    "min_fresh_samples": None,
    "cooldown_minutes": 0,
}


class RuleInvalid(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


MAX_COUNT = 10_000_000
MAX_MINUTES = 366 * 24 * 60  # a year: a longer period or cooldown is a typo
MAX_HOURS = 366 * 24


def _positive(errors, data, field, label, *, required, maximum=MAX_COUNT):
    value = data.get(field)
    if value is None:
        if required:
            errors[field] = f"Give {label}."
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        errors[field] = f"{label.capitalize()} must be a whole number above 0."
    elif value > maximum:
        errors[field] = f"{label.capitalize()} must be at most {maximum}."


def check_rule(loop: Loop, data: dict) -> dict:
    """The complete, cleaned field values of a rule; fields the kind does not use are reset."""
    values = {**DEFAULTS, **{k: v for k, v in data.items() if k in EDITABLE_FIELDS}}
    errors: dict[str, str] = {}
    values["name"] = (values.get("name") or "").strip()
    if not values["name"]:
        errors["name"] = "A rule needs a name."
    elif len(values["name"]) > 120:
        errors["name"] = "At most 120 characters."
    kind = values.get("kind")
    if kind not in RuleKind.values:
        errors["kind"] = f"Choose one of {', '.join(RuleKind.values)}."
    if values["action"] not in RuleAction.values:
        errors["action"] = f"Choose one of {', '.join(RuleAction.values)}."
    cooldown = values["cooldown_minutes"]
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
        errors["cooldown_minutes"] = "The cooldown is a whole number of minutes, 0 or more."
    elif cooldown > MAX_MINUTES:
        errors["cooldown_minutes"] = f"The cooldown is at most {MAX_MINUTES} minutes (a year)."
    values["time_zone"] = (values["time_zone"] or "UTC").strip()
    try:
        schedule.zone(values["time_zone"])
    except schedule.ScheduleError as exc:
        errors["time_zone"] = str(exc)
    _check_window(values, errors)
    class_names = list(loop.dataset.class_names)
    values["class_name"] = (values["class_name"] or "").strip()
    if values["class_name"] and values["class_name"] not in class_names:
        errors["class_name"] = (
            f"{values['class_name']!r} is not a class of dataset {loop.dataset}: "
            f"choose from {', '.join(class_names)}."
        )

    if kind == RuleKind.TIME:
        _check_time(values, errors)
        _reset(values, "min_samples", "class_name", *_PRECISION_FIELDS)
    elif kind == RuleKind.SAMPLE_COUNT:
        _positive(errors, values, "min_samples", "the number of labels", required=True)
        _reset(values, *_TIME_FIELDS, *_PRECISION_FIELDS)
    elif kind == RuleKind.PRECISION:
        _check_precision(values, errors)
        _reset(values, *_TIME_FIELDS, "min_samples")
    if not errors and kind == RuleKind.TIME and values["window_start"] is not None:
        _check_slots_reach_window(values, errors)
    if errors:
        raise RuleInvalid(errors)
    return {field: values[field] for field in EDITABLE_FIELDS}


def _check_slots_reach_window(values, errors, slots_to_try: int = 1000, days: int = 8):
    """A schedule whose slots all fall outside the window would never fire: say so now.

    The slots are checked for at least `days` days (a daily window, a weekly cron, daylight
    saving) and at least `slots_to_try` slots: 1,000 slots of a one-minute interval cover only
    16 hours, and from 02:00 they would not reach a window that opens at 22:00."""
    now = timezone.now()
    horizon = now + timedelta(days=days)
    if values["cron"]:
        moments = schedule.croniter(
            values["cron"], now.astimezone(schedule.zone(values["time_zone"]))
        )
        upcoming = (moments.get_next(schedule.datetime) for _ in itertools.count())
    else:
        minutes = values["every"] * (60 if values["every_unit"] == IntervalUnit.HOURS else 1)
        upcoming = (now + timedelta(minutes=minutes * k) for k in itertools.count(1))
    for checked, slot in enumerate(upcoming, start=1):
        if schedule.in_window(
            slot, values["window_start"], values["window_end"], values["time_zone"]
        ):
            return
        if checked >= slots_to_try and slot > horizon:
            break
    errors["window_start"] = (
        f"No slot of this schedule falls inside the window (checked {checked} slots, at least "
        f"{days} days ahead): the rule would never fire. Widen the window or change the schedule."
    )


_TIME_FIELDS = ("every", "every_unit", "cron")
_PRECISION_FIELDS = ("metric", "comparison", "threshold", "min_fresh_samples")


def _reset(values, *fields):
    for field in fields:
        values[field] = DEFAULTS[field]


def _check_window(values, errors):
    start, end = values["window_start"], values["window_end"]
    for field in ("window_start", "window_end"):
        if values[field] is not None and not isinstance(values[field], time):
            errors[field] = "Give the time as HH:MM."
    if (start is None) != (end is None):
        field = "window_end" if end is None else "window_start"
        errors[field] = "A window needs both a start and an end (or neither)."
    elif start is not None and start == end:
        errors["window_end"] = "The window's end equals its start: it would be empty."


def _check_time(values, errors):
    values["cron"] = (values["cron"] or "").strip()
    if values["every"] is not None and values["cron"]:
        errors["cron"] = "Give either an interval or a cron expression, not both."
    elif values["every"] is None and not values["cron"]:
        errors["every"] = "Give an interval (every N minutes or hours) or a cron expression."
    elif values["cron"]:
        try:
            values["cron"] = schedule.check_cron(values["cron"])
        except schedule.ScheduleError as exc:
            errors["cron"] = str(exc)
    else:
        if values["every_unit"] not in IntervalUnit.values:
            errors["every_unit"] = f"Choose one of {', '.join(IntervalUnit.values)}."
        hours = values["every_unit"] == IntervalUnit.HOURS
        _positive(
            errors,
            values,
            "every",
            "the interval",
            required=True,
            maximum=MAX_HOURS if hours else MAX_MINUTES,
        )


def _check_precision(values, errors):
    metric = values["metric"]
    allowed = PER_CLASS_METRICS if values["class_name"] else OVERALL_METRICS
    if metric not in allowed:
        errors["metric"] = (
            f"The evaluation produces {', '.join(allowed)}"
            + (" per class (no per-class mAP)" if values["class_name"] else "")
            + f"; not {metric!r}."
        )
    if values["comparison"] not in Comparison.values:
        errors["comparison"] = (
            "Choose 'below' (the metric falls under a bound) or 'drop' (it fell by at least "
            "the threshold since deploy)."
        )
    threshold = values["threshold"]
    if threshold is None:
        errors["threshold"] = "Give the threshold."
    elif isinstance(threshold, bool) or not isinstance(threshold, int | float):
        errors["threshold"] = "The threshold is a number."
    elif not (0 < threshold <= 1) or threshold != threshold:
        errors["threshold"] = (
            f"{metric or 'The metric'} lies in [0, 1]: the threshold must be above 0 and at most 1."
        )
    _positive(errors, values, "min_fresh_samples", "the minimum of fresh samples", required=True)


def create_rule(loop: Loop, data: dict, *, user=None) -> TriggerRule:
    values = check_rule(loop, data)
    rule = TriggerRule.objects.create(
        loop=loop, created_by=user, anchor_at=timezone.now(), **values
    )
    _evaluate_soon(rule.pk, "edit")
    return rule


def update_rule(rule: TriggerRule, data: dict) -> TriggerRule:
    """Merges `data` into the rule as stored now, checks the result as a whole and saves the
    fields that changed; the next evaluation (started at once) uses them.

    The merge runs on the locked row, and only changed fields are written, so concurrent edits of
    different fields (a PATCH of `enabled` next to one of `name`) all apply. A change to the
    schedule or window restarts the schedule from now."""
    with transaction.atomic():
        locked = (
            TriggerRule.objects.select_for_update(of=("self",))
            .select_related("loop__dataset")
            .get(pk=rule.pk)
        )
        current = {field: getattr(locked, field) for field in EDITABLE_FIELDS}
        values = check_rule(locked.loop, {**current, **data})
        changed = [field for field in EDITABLE_FIELDS if current[field] != values[field]]
        for field in changed:
            setattr(locked, field, values[field])
        if any(field in changed for field in SCHEDULE_FIELDS):
            locked.anchor_at, locked.last_slot_at = timezone.now(), None
            changed += ["anchor_at", "last_slot_at"]
        if any(field in changed for field in ("metric", "class_name", "kind")):
            locked.measured_key, locked.measured_value, locked.measured_count = "", None, 0
            changed += ["measured_key", "measured_value", "measured_count"]
        if changed:
            locked.save(update_fields=changed)
    _evaluate_soon(locked.pk, "edit")
    return locked


def delete_rule(rule: TriggerRule) -> None:
    rule.delete()


def _evaluate_soon(rule_id: int, cause: str) -> None:
    from apps.triggers.listeners import enqueue_evaluation

    transaction.on_commit(lambda: enqueue_evaluation([rule_id], cause))
