"""Time arithmetic of rules: schedule slots (interval or cron) and daily windows.

Pure functions of their arguments (no Django, no clock): the evaluator passes `now`, tests pass a
frozen one. Cron expressions are the classic five fields, read by croniter, in the rule's zone.
"""

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter


class ScheduleError(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"Unknown time zone {name!r}; use an IANA name like Europe/Berlin."
        ) from exc


# croniter's extensions R (random) and H (hashed), alone or as R(0-5): a letter that is not
# part of a month or weekday name. R draws a new slot at every evaluation (a "daily" rule would
# fire at random, many times a day), so neither is accepted; L and # are deterministic and stay.
_NOT_CLASSIC = re.compile(r"(?<![A-Za-z])[RrHh](?![A-Za-z])|[()]")


def check_cron(expression: str) -> str:
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise ScheduleError(
            "A cron expression has five fields: minute hour day-of-month month day-of-week."
        )
    if _NOT_CLASSIC.search(expression):
        raise ScheduleError(
            f"Invalid cron expression {expression!r}: random (R) and hashed (H) fields are not "
            "supported, since the schedule must be the same at every evaluation. Use numbers, "
            "*, ranges (1-5), lists (1,3) and steps (*/15)."
        )
    try:
        croniter(expression, datetime(2026, 1, 1)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise ScheduleError(f"Invalid cron expression {expression!r}: {exc}") from exc
    return expression


def in_window(moment: datetime, start: time | None, end: time | None, tz: str) -> bool:
    """Whether `moment` (aware) lies in the daily window [start, end) of zone `tz`.

    No window: always. A window whose end is before its start wraps midnight (22:00–02:00).
    """
    if start is None or end is None:
        return True
    local = moment.astimezone(zone(tz)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def next_window_opening(moment: datetime, start: time | None, end: time | None, tz: str):
    """The first moment ≥ `moment` inside the window (aware, in UTC's terms)."""
    if in_window(moment, start, end, tz):
        return moment
    local = moment.astimezone(zone(tz))
    opening = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if opening <= local:
        opening += timedelta(days=1)
    return opening


def interval_slot(anchor: datetime, period: timedelta, now: datetime) -> datetime | None:
    """The latest anchor + k·period ≤ now with k ≥ 1; None before the first one."""
    if now < anchor + period:
        return None
    steps = (now - anchor) // period
    return anchor + steps * period


def cron_slot(expression: str, tz: str, now: datetime) -> datetime:
    """The latest cron time ≤ now (aware)."""
    local = now.astimezone(zone(tz))
    # croniter's get_prev is strict; a moment exactly on a slot counts as that slot.
    probe = croniter(expression, local + timedelta(seconds=1))
    return probe.get_prev(datetime)


def cron_next(expression: str, tz: str, now: datetime) -> datetime:
    return croniter(expression, now.astimezone(zone(tz))).get_next(datetime)
