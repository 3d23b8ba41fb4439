"""Small display filters shared by the pages: job kinds in words, metrics, signed changes."""

from django import template

from apps.jobs.kinds import KINDS

register = template.Library()


@register.filter
def kind_label(kind: str) -> str:
    """`dataset_import` → "Dataset import"; an unknown kind reads as words too."""
    known = KINDS.get(kind)
    return known.label if known else str(kind).replace("_", " ").capitalize()


@register.filter
def metric(value, digits: int = 3) -> str:
    """A metric with fixed digits; missing ones read "n/a", not 0.000."""
    if value is None or value == "":
        return "n/a"
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return "n/a"


@register.filter
def class_metric(per_class: dict, name: str) -> str:
    """A per-class metric: "n/a" for a class without ground-truth boxes (nothing to find)."""
    if not per_class or not per_class.get("ground_truth"):
        return "n/a"
    return metric(per_class.get(name))


@register.filter
def signed(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):+.{int(digits)}f}"


@register.filter
def change_class(value) -> str:
    """CSS class of a change: better, worse or unchanged."""
    if value is None or value == "":
        return ""
    return "better" if value > 1e-9 else "worse" if value < -1e-9 else "same"


@register.filter
def job_display_status(job) -> str:
    """A training skipped because nothing changed is shown as skipped, not succeeded."""
    result = getattr(job, "result_skipped", None)
    if result is None and "result" in job.__dict__:
        result = (job.result or {}).get("skipped")
    return (
        "skipped" if job.status == "succeeded" and result in (True, "true", 1, "1") else job.status
    )


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


MAX_RESULT_ROWS = 100


def _words(key: str) -> str:
    return str(key).replace("_", " ")


@register.filter
def readable_result(result) -> list[dict]:
    """A job result as rows to show: scalars, short lists, and lists of records as tables."""
    if not isinstance(result, dict):
        return []
    rows: list[dict] = []

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict | list):
                    rows.append({"key": f"{key} · {_words(inner)}", "text": _short(inner_value)})
                else:
                    rows.append({"key": f"{key} · {_words(inner)}", "text": _scalar(inner_value)})
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value[:MAX_RESULT_ROWS] for k in v))
            rows.append(
                {
                    "key": key,
                    "columns": [_words(c) for c in columns],
                    "table": [
                        [
                            _scalar(v.get(c))
                            if not isinstance(v.get(c), dict | list)
                            else _short(v.get(c))
                            for c in columns
                        ]
                        for v in value[:MAX_RESULT_ROWS]
                    ],
                    "more": max(0, len(value) - MAX_RESULT_ROWS),
                }
            )
        elif isinstance(value, list):
            rows.append({"key": key, "text": ", ".join(_scalar(v) for v in value) or "—"})
        else:
            rows.append({"key": key, "text": _scalar(value)})

    for key, value in result.items():
        add(_words(key), value)
    return rows


def _scalar(value) -> str:
    if value is None:
        return "—"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(value) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "…"
