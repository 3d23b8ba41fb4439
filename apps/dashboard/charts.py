"""What a page hands static/js/line_chart.js to draw a chart of counts: the points, the series
and their names, axis titles and the CSV's file name (`drawChart` reads it from a json_script)."""

from datetime import date, timedelta


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
