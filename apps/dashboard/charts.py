"""What a page hands static/js/line_chart.js to draw a chart of counts: the points, the series
and their names, axis titles and the CSV's file name (`drawChart` reads it from a json_script)."""

from datetime import date, datetime, time, timedelta

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When
from django.utils import timezone


def chart(
    points: list[dict],
    *,
    x: str,
    series: dict[str, str],
    x_title: str,
    y_title: str,
    filename: str,
    kind: str = "line",
) -> dict:
    """`series`: key in the points → its name in the legend and the table."""
    return {
        "kind": kind,
        "points": points,
        "x": x,
        "series": list(series),
        "names": series,
        "xTitle": x_title,
        "yTitle": y_title,
        "filename": filename,
    }


def last_days(days: int, today: date) -> list[date]:
    """The `days` calendar days up to and including `today`, oldest first."""
    return [today - timedelta(days=back) for back in range(days - 1, -1, -1)]


def per_day(counts: dict[date, dict[str, int]], keys: list[str], days: list[date]) -> list[dict]:
    """One point per day, with 0 for a day or a key without rows (a quiet day is a fact)."""
    return [
        {"day": day.isoformat(), **{key: counts.get(day, {}).get(key, 0) for key in keys}}
        for day in days
    ]


def counts_per_day(
    rows: QuerySet,
    days: list[date],
    *,
    by: str = "",
    key: str = "count",
    at: str = "created_at",
    distinct: str = "",
) -> dict[date, dict[str, int]]:
    """How many of `rows` fall on each day (in the portal's time zone), per value of the field
    `by` (else under `key`): one grouped query. The day is found by comparing the timestamp with
    the days' starts (a CASE), not with a date function, which SQLite would call in Python for
    every row. `distinct`: count distinct values of this field instead of rows."""
    starts = [timezone.make_aware(datetime.combine(day, time.min)) for day in days]
    end = timezone.make_aware(datetime.combine(days[-1] + timedelta(days=1), time.min))
    day_index = _day_index(at, starts, 0, len(starts))
    grouped = (
        rows.filter(**{f"{at}__gte": starts[0], f"{at}__lt": end})
        .annotate(day_index=day_index)
        .values_list("day_index", *([by] if by else []))
        .annotate(n=Count(distinct or "pk", distinct=bool(distinct)))
        .order_by()
    )
    counts: dict[date, dict[str, int]] = {}
    for row in grouped:
        index, n = row[0], row[-1]
        counts.setdefault(days[index], {})[str(row[1]) if by else key] = n
    return counts


def _day_index(at: str, starts: list[datetime], low: int, high: int):
    """The index of the day holding the timestamp among starts[low:high], as nested CASEs that
    halve the days: a handful of comparisons per row, not one per day."""
    if high - low == 1:
        return Value(low)
    middle = (low + high) // 2
    return Case(
        When(**{f"{at}__lt": starts[middle]}, then=_day_index(at, starts, low, middle)),
        default=_day_index(at, starts, middle, high),
        output_field=IntegerField(),
    )
