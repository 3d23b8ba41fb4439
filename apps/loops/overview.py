"""Read-side summaries of loops and versions for the pages: headline metrics, the metrics chart,
comparing two versions, and what changed since a version's parent.

Built for 1,000 versions and 100,000 trained samples: a bounded number of queries, never a
version's whole lineage in memory (counts are SQL), never job results.
"""

import difflib
import hashlib
import json
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from apps.loops.models import (
    Deployment,
    Evaluation,
    EvaluationSet,
    Loop,
    ModelVersion,
    TrainedSample,
)

SET_NAMES = {
    EvaluationSet.EDGE: "edge set (new data)",
    EvaluationSet.REGRESSION: "regression set (forgetting)",
}
EVALUATION_FIELDS = (
    "id",
    "version_id",
    "evaluation_set",
    "image_count",
    "data_sha256",
    "metrics",
    "baseline_id",
    "baseline_metrics",
    "created_at",
)


def latest_evaluations(version_ids) -> dict[tuple[int, str], Evaluation]:
    """The newest evaluation of each (version, set): one query."""
    latest: dict[tuple[int, str], Evaluation] = {}
    rows = (
        Evaluation.objects.filter(version_id__in=list(version_ids))
        .only(*EVALUATION_FIELDS)
        .order_by("created_at", "id")
    )
    for evaluation in rows:
        latest[(evaluation.version_id, evaluation.evaluation_set)] = evaluation
    return latest


def loop_evaluations(loop_id: int) -> dict[tuple[int, str], Evaluation]:
    latest: dict[tuple[int, str], Evaluation] = {}
    rows = (
        Evaluation.objects.filter(version__loop_id=loop_id)
        .only(*EVALUATION_FIELDS)
        .order_by("created_at", "id")
    )
    for evaluation in rows:
        latest[(evaluation.version_id, evaluation.evaluation_set)] = evaluation
    return latest


@dataclass
class Headline:
    """A version's headline numbers: F1 and mAP on the edge set (else the regression set), the
    change against the version it was compared with, and forgetting on the regression set."""

    evaluation_set: str | None = None
    f1: float | None = None
    map: float | None = None
    f1_change: float | None = None
    map_change: float | None = None
    baseline_label: str | None = None
    regression_map_change: float | None = None


def headline(version_id: int, latest: dict, labels: dict[int, str] | None = None) -> Headline:
    edge = latest.get((version_id, EvaluationSet.EDGE))
    regression = latest.get((version_id, EvaluationSet.REGRESSION))
    shown = edge or regression
    if shown is None:
        return Headline()
    result = Headline(
        evaluation_set=shown.evaluation_set,
        f1=shown.metrics.get("f1"),
        map=shown.metrics.get("mAP"),
        f1_change=shown.f1_change,
        map_change=shown.map_change,
        baseline_label=(labels or {}).get(shown.baseline_id),
    )
    if regression is not None:
        result.regression_map_change = regression.map_change
    return result


def version_rows(versions: list[ModelVersion]) -> list[ModelVersion]:
    """Attaches ``headline`` and ``started_by`` to each version of a page (two queries)."""
    latest = latest_evaluations(v.pk for v in versions)
    labels = dict(
        ModelVersion.objects.filter(
            pk__in={e.baseline_id for e in latest.values()} - {None}
        ).values_list("pk", "number")
    )
    labels = {pk: f"v{number}" for pk, number in labels.items()}
    for version in versions:
        version.headline = headline(version.pk, latest, labels)
        version.started_by = started_by(version)
    return versions


def started_by(version: ModelVersion) -> str:
    """The trigger or person behind a version, in words."""
    job = version.train_job if version.train_job_id else None
    if job is not None:
        return job.started_by or job.get_trigger_display()
    if version.created_by_id and version.created_by:
        return version.created_by.get_username()
    return version.get_source_display()


def metrics_chart(loop: Loop, class_names: list[str]) -> dict:
    """The chart's JSON, rebuilt only when an evaluation, a version or the deployed pointer
    changed: the cache key is a fingerprint of those (one aggregate query), so no invalidation
    is needed and a stale chart cannot be served."""
    # Ids alone could repeat (SQLite reuses the highest id after a delete): times too.
    evaluations = Evaluation.objects.filter(version__loop_id=loop.pk).aggregate(
        n=Count("id"), last=Max("id"), at=Max("created_at")
    )
    versions = loop.versions.aggregate(n=Count("id"), last=Max("id"), at=Max("created_at"))
    fingerprint = hashlib.sha256(
        json.dumps(
            [loop.pk, evaluations, versions, loop.deployed_version_id, list(class_names)],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    key = f"loop-metrics-chart:{loop.pk}:{fingerprint}"
    chart = cache.get(key)
    if chart is None:
        chart = build_metrics_chart(loop, class_names)
        cache.set(key, chart, CHART_CACHE_SECONDS)
    return chart


CHART_CACHE_SECONDS = 3600


def build_metrics_chart(loop: Loop, class_names: list[str]) -> dict:
    """Every version's latest metrics per set, as the chart's JSON (oldest version first).

    The numbers are read out of the metrics JSON by the database (one query, a few columns per
    row): decoding 2,000 whole metrics documents in Python would cost more than the page."""
    numbers = list(loop.versions.order_by("number").values_list("pk", "number"))
    # Text transforms: SQLite hands over plain numbers, PostgreSQL text; neither is decoded as
    # JSON in Python (20,000 values for 1,000 versions).
    columns = {"mAP": KeyTextTransform("mAP", "metrics"), "f1": KeyTextTransform("f1", "metrics")}
    for index, name in enumerate(class_names):
        of_class = KeyTransform(name, KeyTransform("per_class", "metrics"))
        columns[f"f1_{index}"] = KeyTextTransform("f1", of_class)
        columns[f"gt_{index}"] = KeyTextTransform("ground_truth", of_class)
    keys = list(columns)
    rows = (
        Evaluation.objects.filter(version__loop_id=loop.pk)
        .order_by("created_at", "id")
        .annotate(**{f"chart_{key}": column for key, column in columns.items()})
        .values_list("version_id", "evaluation_set", *(f"chart_{key}" for key in keys))
    )
    latest: dict[tuple[int, str], dict] = {}
    for version_id, evaluation_set, *values in rows:
        latest[(version_id, evaluation_set)] = dict(zip(keys, values, strict=True))
    deployed_number = dict(numbers).get(loop.deployed_version_id)

    def series(pick) -> dict:
        return {
            str(evaluation_set): [
                _round(pick(latest.get((pk, evaluation_set)))) for pk, _ in numbers
            ]
            for evaluation_set in SET_NAMES
        }

    def overall(name):
        return lambda row: row[name] if row else None

    def of_class(index):
        return lambda row: row[f"f1_{index}"] if row and _number(row[f"gt_{index}"]) else None

    views = [
        {
            "title": "mAP (all classes)",
            "axis": "mAP (0–1, higher is better)",
            "series": series(overall("mAP")),
        },
        {
            "title": "F1 (all classes)",
            "axis": "F1 (0–1, higher is better)",
            "series": series(overall("f1")),
        },
    ] + [
        {"title": f"F1 of {name}", "axis": f"F1 of {name} (0–1)", "series": series(of_class(i))}
        for i, name in enumerate(class_names)
    ]
    return {
        "versions": [f"v{number}" for _, number in numbers],
        "deployed": f"v{deployed_number}" if deployed_number else None,
        "set_names": {str(k): v for k, v in SET_NAMES.items()},
        "views": views,
    }


def _number(value) -> float | None:
    """A JSON number read by the database (PostgreSQL may hand it over as text)."""
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _round(value):
    number = _number(value)
    return round(number, 4) if number is not None else None


# --- Compare two versions ----------------------------------------------------------------------


@dataclass
class SetComparison:
    evaluation_set: str
    title: str
    a: Evaluation | None
    b: Evaluation | None
    same_data: bool
    rows: list[dict] = field(default_factory=list)
    class_rows: list[dict] = field(default_factory=list)


OVERALL_METRICS = ("mAP", "AP50", "precision", "recall", "f1")


def _pair_on_same_data(a: ModelVersion, b: ModelVersion, evaluation_set: str):
    """The newest evaluations of both versions on identical data, else the newest of each."""
    rows_a = list(
        a.evaluations.filter(evaluation_set=evaluation_set).only(*EVALUATION_FIELDS)
    )  # newest first (Meta.ordering)
    rows_b = list(b.evaluations.filter(evaluation_set=evaluation_set).only(*EVALUATION_FIELDS))
    by_hash_b = {}
    for evaluation in rows_b:
        by_hash_b.setdefault(evaluation.data_sha256, evaluation)
    for evaluation in rows_a:
        if evaluation.data_sha256 in by_hash_b:
            return evaluation, by_hash_b[evaluation.data_sha256], True
    # b may have been measured as a's baseline on a's data (stored with a's evaluation).
    for evaluation in rows_a:
        if evaluation.baseline_id == b.pk and evaluation.baseline_metrics:
            twin = Evaluation(
                version=b,
                evaluation_set=evaluation_set,
                image_count=evaluation.image_count,
                data_sha256=evaluation.data_sha256,
                metrics=evaluation.baseline_metrics,
                created_at=evaluation.created_at,
            )
            return evaluation, twin, True
    return (rows_a[0] if rows_a else None), (rows_b[0] if rows_b else None), False


def _difference(x, y):
    if isinstance(x, int | float) and isinstance(y, int | float):
        return y - x
    return None


def compare_versions(a: ModelVersion, b: ModelVersion, class_names: list[str]) -> dict:
    sets = []
    for evaluation_set, title in SET_NAMES.items():
        ea, eb, same = _pair_on_same_data(a, b, evaluation_set)
        comparison = SetComparison(evaluation_set, title, ea, eb, same)
        if ea or eb:
            ma = ea.metrics if ea else {}
            mb = eb.metrics if eb else {}
            for name in OVERALL_METRICS:
                comparison.rows.append(
                    {
                        "name": name,
                        "a": ma.get(name),
                        "b": mb.get(name),
                        "change": _difference(ma.get(name), mb.get(name)),
                    }
                )
            names = list(class_names) + [
                n
                for n in {**ma.get("per_class", {}), **mb.get("per_class", {})}
                if n not in class_names
            ]
            for name in names:
                ca = ma.get("per_class", {}).get(name) or {}
                cb = mb.get("per_class", {}).get(name) or {}
                fa = ca.get("f1") if ca.get("ground_truth") else None
                fb = cb.get("f1") if cb.get("ground_truth") else None
                comparison.class_rows.append(
                    {
                        "name": name,
                        "a": ca,
                        "b": cb,
                        "f1_a": fa,
                        "f1_b": fb,
                        "change": _difference(fa, fb),
                    }
                )
        sets.append(comparison)
    keys = sorted(set(a.hyperparameters) | set(b.hyperparameters))
    hyperparameters = [
        {
            "name": key,
            "a": a.hyperparameters.get(key, "—"),
            "b": b.hyperparameters.get(key, "—"),
            "differs": a.hyperparameters.get(key) != b.hyperparameters.get(key),
        }
        for key in keys
    ]
    yaml_diff = [
        {
            "text": line,
            "kind": "add" if line.startswith("+") else "del" if line.startswith("-") else "",
        }
        for line in difflib.unified_diff(
            a.algorithm_yaml.splitlines(),
            b.algorithm_yaml.splitlines(),
            fromfile=a.label,
            tofile=b.label,
            lineterm="",
        )
    ]
    return {"sets": sets, "hyperparameters": hyperparameters, "yaml_diff": yaml_diff}


# --- What changed since the parent ---------------------------------------------------------------


@dataclass
class Changes:
    trained: int
    added: int
    relabeled: int
    removed: int
    added_examples: list[int]
    relabeled_examples: list[int]


EXAMPLES = 12


def what_changed(version: ModelVersion) -> Changes | None:
    """Samples added, relabeled and dropped since the parent.

    A version's lineage never changes, so the answer is computed once (by the training, or here
    from the TrainedSample rows in SQL on the first view of an older version) and kept in
    ``train_summary["changes"]``."""
    if version.parent_id is None:
        return None
    stored = (version.train_summary or {}).get("changes")
    if not stored:
        stored = count_changes(version.pk, version.parent_id)
        version.train_summary = {**(version.train_summary or {}), "changes": stored}
        ModelVersion.objects.filter(pk=version.pk).update(train_summary=version.train_summary)
    return Changes(**stored)


def count_changes(version_id: int, parent_id: int) -> dict:
    rows = TrainedSample.objects.filter(version_id=version_id)
    parent_same_sample = TrainedSample.objects.filter(
        version_id=parent_id, sample_id=OuterRef("sample_id")
    )
    added = rows.filter(~Exists(parent_same_sample))
    relabeled = rows.filter(
        Exists(parent_same_sample.filter(~Q(annotation_id=OuterRef("annotation_id"))))
    )
    removed = TrainedSample.objects.filter(version_id=parent_id).filter(
        ~Exists(
            TrainedSample.objects.filter(version_id=version_id, sample_id=OuterRef("sample_id"))
        )
    )
    return {
        "trained": rows.count(),
        "added": added.count(),
        "relabeled": relabeled.count(),
        "removed": removed.count(),
        "added_examples": list(
            added.order_by("-sample_id").values_list("sample_id", flat=True)[:EXAMPLES]
        ),
        "relabeled_examples": list(
            relabeled.order_by("-sample_id").values_list("sample_id", flat=True)[:EXAMPLES]
        ),
    }


def changes_between(pairs, parent_pairs) -> dict:
    """The same numbers from two pair lists in memory (the training has both at hand)."""
    parent = dict(parent_pairs)
    current = dict(pairs)
    added = sorted((s for s in current if s not in parent), reverse=True)
    relabeled = sorted(
        (s for s, a in current.items() if s in parent and parent[s] != a), reverse=True
    )
    return {
        "trained": len(current),
        "added": len(added),
        "relabeled": len(relabeled),
        "removed": sum(1 for s in parent if s not in current),
        "added_examples": added[:EXAMPLES],
        "relabeled_examples": relabeled[:EXAMPLES],
    }


def deployments_of(version: ModelVersion):
    """Who deployed or rolled back to it (and away from it), and why."""
    return (
        Deployment.objects.filter(Q(version=version) | Q(previous=version))
        .select_related("version", "previous")
        .order_by("-created_at", "-id")[:20]
    )
