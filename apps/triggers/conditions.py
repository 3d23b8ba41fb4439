"""What a rule's condition looks at: unseen labels, fresh edge samples, measured metrics.

Reads only; the evaluator decides and writes.
"""

import hashlib
import json

from django.db.models import Exists, OuterRef, Q, Subquery

from apps.datasets.models import Box, Sample, SampleSource, SampleStatus, Split
from apps.loops.models import (
    Deployment,
    Evaluation,
    EvaluationSet,
    Loop,
    ModelVersion,
    TrainedSample,
    VersionSource,
)

OVERALL_METRICS = ("precision", "recall", "f1", "mAP")
PER_CLASS_METRICS = ("precision", "recall", "f1")  # the evaluation has no per-class mAP


def latest_trained_version(loop: Loop) -> ModelVersion | None:
    return loop.versions.filter(source=VersionSource.TRAINED).order_by("-number").first()


def latest_trained_version_id(loop_id) -> Subquery:
    """The id of the loop's latest trained version, to annotate rows with (`loop_id` may be an
    OuterRef)."""
    return Subquery(
        ModelVersion.objects.filter(loop_id=loop_id, source=VersionSource.TRAINED)
        .order_by("-number")
        .values("pk")[:1]
    )


def latest_trained_version_ids(loop_ids) -> dict[int, int]:
    """The latest trained version of each loop (loops without one are left out), one query."""
    rows = (
        Loop.objects.filter(pk__in=list(loop_ids))
        .annotate(latest_trained=latest_trained_version_id(OuterRef("pk")))
        .values_list("pk", "latest_trained")
    )
    return {loop_id: version_id for loop_id, version_id in rows if version_id is not None}


def unseen_labeled_samples(loop: Loop, class_name: str = ""):
    """Labeled train-split samples whose current revision the latest trained version did not
    see: new labels and relabels. With a class, only samples whose current labels hold it."""
    version = latest_trained_version(loop)
    return Sample.objects.filter(
        unseen_labeled(loop.dataset_id, version.pk if version else None, class_name)
    )


def unseen_labeled(dataset_id: int, version_id: int | None, class_name: str = "") -> Q:
    """The condition of `unseen_labeled_samples` on Sample rows, given the latest trained
    version: a filter, or the filter of one count among several in one query.

    A current revision whose boxes equal those of the revision the version saw (same
    `boxes_key`: a re-save of unchanged boxes, or a relabel undone) is not unseen."""
    condition = Q(
        dataset_id=dataset_id,
        status=SampleStatus.LABELED,
        split=Split.TRAIN,
        current_annotation__isnull=False,
    )
    if version_id is not None:
        seen = TrainedSample.objects.filter(
            Q(annotation_id=OuterRef("current_annotation"))
            | Q(annotation__boxes_key=OuterRef("current_annotation__boxes_key")),
            version_id=version_id,
            sample_id=OuterRef("pk"),
        )
        condition &= ~Exists(seen)
    if class_name:
        condition &= Exists(
            Box.objects.filter(annotation_id=OuterRef("current_annotation"), class_name=class_name)
        )
    return condition


def deployed_since(loop: Loop):
    """When the deployed version went live (its latest deployment), or None."""
    if loop.deployed_version_id is None:
        return None
    deployment = (
        Deployment.objects.filter(loop=loop, version_id=loop.deployed_version_id)
        .order_by("-created_at", "-id")
        .first()
    )
    return deployment.created_at if deployment else loop.deployed_version.created_at


def fresh_edge_pairs(loop: Loop, since) -> list[tuple[int, int]]:
    """(sample, current revision) of labeled device samples that arrived after `since`.

    Every split counts: the deployed version saw none of them (they came after it)."""
    return list(
        Sample.objects.filter(
            dataset_id=loop.dataset_id,
            source=SampleSource.DEVICE,
            status=SampleStatus.LABELED,
            current_annotation__isnull=False,
            created_at__gt=since,
        )
        .order_by("id")
        .values_list("id", "current_annotation_id")
    )


def pairs_key(pairs) -> str:
    return hashlib.sha256(json.dumps([list(p) for p in pairs]).encode()).hexdigest()[:32]


def metric_value(metrics: dict, metric: str, class_name: str = "") -> float | None:
    """The metric from an evaluation's metrics dict; None when it holds no such value."""
    if not metrics:
        return None
    if class_name:
        entry = (metrics.get("per_class") or {}).get(class_name)
        value = entry.get(metric) if entry else None
    else:
        value = metrics.get(metric)
    return None if value is None else float(value)


def value_at_deploy(version_id: int, metric: str, class_name: str, since) -> float | None:
    """The deployed version's metric on the edge set as last measured before it went live
    (else its earliest edge evaluation)."""
    evaluations = Evaluation.objects.filter(
        version_id=version_id, evaluation_set=EvaluationSet.EDGE
    )
    before = evaluations.filter(created_at__lte=since).order_by("-created_at", "-id").first()
    chosen = before or evaluations.order_by("created_at", "id").first()
    return metric_value(chosen.metrics, metric, class_name) if chosen else None
