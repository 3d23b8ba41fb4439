"""The labeling workflow: the queue, claims, saving a label, skipping, and review.

Every label is written by apps.datasets.services.submit_annotation (the one place that writes
revisions and announces labels_changed); this module decides whether the labeler may save
(their claim), whether the revision waits for review, and what happens to the claim afterwards.
"""

import contextlib
import random
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps as django_apps
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from apps.datasets import counts as dataset_counts
from apps.datasets import services as datasets
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import Annotation, AnnotationSource, Sample, SampleStatus
from apps.labeling.models import (
    Claim,
    LabelReview,
    ReviewSetting,
    ReviewState,
    Skip,
    SkipReason,
)

ORDERS = ("hardness", "newest", "random")


def claim_minutes() -> int:
    return settings.LABELING_CLAIM_MINUTES


def returned_claim_hours() -> int:
    """How long a rejected sample waits for its own labeler before anyone may take it."""
    return settings.LABELING_RETURNED_CLAIM_HOURS


class LabelingError(Exception):
    """A refusal meant for the user; `status` is the HTTP status an API answers with."""

    status = 400


class ClaimedByOther(LabelingError):
    status = 409


# --- Queue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    order: str = "hardness"
    predicted_class: str = ""
    source: str = ""
    miner: str = ""
    split: str = ""
    device: str = ""

    @classmethod
    def from_query(cls, query) -> "QueueFilters":
        order = str(query.get("order", "") or "hardness").strip()
        return cls(
            order=order if order in ORDERS else "hardness",
            predicted_class=str(query.get("class", "") or "").strip(),
            source=str(query.get("source", "") or "").strip(),
            miner=str(query.get("miner", "") or "").strip(),
            split=str(query.get("split", "") or "").strip(),
            device=str(query.get("device", "") or "").strip(),
        )

    def as_query(self) -> dict[str, str]:
        values = {
            "order": "" if self.order == "hardness" else self.order,
            "class": self.predicted_class,
            "source": self.source,
            "miner": self.miner,
            "split": self.split,
            "device": self.device,
        }
        return {key: value for key, value in values.items() if value}


def waiting_samples(dataset_id: int, filters: QueueFilters) -> QuerySet:
    samples = Sample.objects.filter(dataset_id=dataset_id, status=SampleStatus.QUEUED)
    if filters.split:
        samples = samples.filter(split=filters.split)
    if filters.source:
        samples = samples.filter(source=filters.source)
    if filters.miner:
        samples = samples.filter(mined_by=filters.miner)
    if filters.predicted_class:
        samples = samples.filter(_predicts(filters.predicted_class))
    if filters.device:
        samples = samples.filter(_sent_by_device(filters.device))
    return samples


def device_filter_available() -> bool:
    """Which device sent a sample is recorded by the edge app's intake (when it is installed)."""
    return django_apps.is_installed("apps.edge")


def _sent_by_device(token_name: str) -> Q:
    """Samples the edge intake stored from a device whose token has this name."""
    if not device_filter_available():
        return Q(pk__in=[])
    intake = django_apps.get_model("edge", "IntakeRecord")
    return Q(
        Exists(intake.objects.filter(sample_id=OuterRef("pk"), device__token__name=token_name))
    )


def _predicts(class_name: str) -> Q:
    """Samples whose prediction (a list of boxes, or {"boxes": [...]}) has a box of the class."""
    if connection.vendor == "postgresql":
        # jsonb containment: the planner walks the queue index and tests each row cheaply.
        box = [{"class_name": class_name}]
        return Q(prediction__contains=box) | Q(prediction__contains={"boxes": box})
    # SQLite has no JSON containment lookup: match the serialised pair in the stored text
    # (case-insensitively: the only text match JSONField offers there).
    # Class names cannot hold quotes (datasets.CLASS_NAME_PATTERN), so the pattern is exact.
    name = class_name.replace('"', "")
    return Q(prediction__icontains=f'"class_name": "{name}"')


def _hardness_cursor(sample) -> str:
    if sample.hardness_score is None:
        return f"n:{sample.id}"
    return f"h:{sample.hardness_score!r}:{sample.id}"


def _parse_hardness_cursor(cursor: str) -> tuple[float | None, int] | None:
    try:
        if cursor.startswith("n:"):
            return None, int(cursor[2:])
        _, score, sample_id = cursor.split(":")
        score = float(score)
    except ValueError:
        return None
    if score != score:  # NaN
        return None
    return score, int(sample_id)


def _hardness_page(samples: QuerySet, cursor: str, size: int) -> list:
    """Rows after the cursor in (hardness desc nulls last, id desc) order.

    Scored rows and unscored rows are read by two range scans of the queue index (a row-value
    comparison is one index range; an OR of three conditions is not)."""
    parsed = _parse_hardness_cursor(cursor) if cursor else None
    rows = []
    if parsed is None or parsed[0] is not None:
        scored = samples.filter(hardness_score__isnull=False)
        if parsed is not None:
            scored = scored.extra(
                where=[f"({_HARDNESS_COLUMNS}) < (%s, %s)"], params=[parsed[0], parsed[1]]
            )
        rows = list(scored.order_by(F("hardness_score").desc(nulls_last=True), "-id")[:size])
    if len(rows) < size:
        unscored = samples.filter(hardness_score__isnull=True)
        if parsed is not None and parsed[0] is None:
            unscored = unscored.filter(id__lt=parsed[1])
        rows += list(unscored.order_by("-id")[: size - len(rows)])
    return rows


_HARDNESS_COLUMNS = '"datasets_sample"."hardness_score", "datasets_sample"."id"'


def ordered(samples: QuerySet, order: str) -> QuerySet:
    if order == "newest":
        return samples.order_by("-id")
    return samples.order_by(F("hardness_score").desc(nulls_last=True), "-id")


@dataclass
class QueuePage:
    items: list
    next_cursor: str | None


def queue_page(dataset_id: int, filters: QueueFilters, *, after: str = "", size: int = 50):
    """One page of waiting samples: keyset on (hardness, id) or id; one or two queries whatever
    the page.

    "random" shows a page starting at a random id (there is no "next" in a random order)."""
    samples = waiting_samples(dataset_id, filters).only(
        "id",
        "dataset_id",
        "width",
        "height",
        "original_name",
        "split",
        "source",
        "mined_by",
        "hardness_score",
        "created_at",
    )
    if filters.order == "random":
        rows = _random_rows(samples, size)
        return QueuePage(items=rows, next_cursor=None)
    if filters.order == "newest":
        with contextlib.suppress(ValueError):
            samples = samples.filter(id__lt=int(after)) if after else samples
        rows = list(samples.order_by("-id")[: size + 1])
    else:
        rows = _hardness_page(samples, after, size + 1)
    items = rows[:size]
    next_cursor = None
    if len(rows) > size:
        last = items[-1]
        next_cursor = str(last.id) if filters.order == "newest" else _hardness_cursor(last)
    return QueuePage(items=items, next_cursor=next_cursor)


def _random_rows(samples: QuerySet, size: int) -> list:
    """From a random id onwards (wrapping round): two indexed queries, no ORDER BY RANDOM()."""
    pivot = random.randint(0, 2**31)
    bounds = samples.order_by("id").values_list("id", flat=True)
    first = bounds.first()
    last = samples.order_by("-id").values_list("id", flat=True).first()
    if first is None:
        return []
    pivot = first + pivot % (last - first + 1)
    rows = list(samples.filter(id__gte=pivot).order_by("id")[:size])
    if len(rows) < size:
        rows += list(samples.filter(id__lt=pivot).order_by("id")[: size - len(rows)])
    return rows


@dataclass
class QueueCounters:
    waiting: int
    labeled_today: int
    labeled_by_me_today: int
    pending_review: int


def queue_counters(dataset_id: int, user) -> QueueCounters:
    """Three queries whatever the size of the queue."""
    waiting = Sample.objects.filter(dataset_id=dataset_id, status=SampleStatus.QUEUED).count()
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Annotation.objects.filter(
        sample__dataset_id=dataset_id, source=AnnotationSource.MANUAL, created_at__gte=midnight
    ).aggregate(
        labeled=Count("sample_id", distinct=True),
        mine=Count("sample_id", distinct=True, filter=Q(created_by_id=user.pk)),
    )
    pending = LabelReview.objects.filter(dataset_id=dataset_id, state=ReviewState.PENDING).count()
    return QueueCounters(
        waiting=waiting,
        labeled_today=today["labeled"],
        labeled_by_me_today=today["mine"],
        pending_review=pending,
    )


def live_claims(sample_ids) -> dict[int, Claim]:
    now = timezone.now()
    claims = Claim.objects.filter(sample_id__in=list(sample_ids), expires_at__gt=now)
    return {claim.sample_id: claim for claim in claims.select_related("user")}


# --- Claims --------------------------------------------------------------------------------


def _live_claim_by_other(user) -> Exists:
    return Exists(
        Claim.objects.filter(sample_id=OuterRef("pk"), expires_at__gt=timezone.now()).exclude(
            user=user
        )
    )


def claim_batch(
    dataset_id: int, user, filters: QueueFilters | None = None, *, size: int = 5
) -> list[int]:
    """Sample ids reserved for `user`: the ones they already hold first (returned ones before
    others), then fresh ones in queue order. Two labelers never hold the same sample: the claim
    row is unique per sample and inserted with ON CONFLICT DO NOTHING, so a race loses cleanly.

    Runs in autocommit on purpose: each claim insert commits at once and is visible to others.
    """
    filters = filters or QueueFilters()
    now = timezone.now()
    expires = now + timedelta(minutes=claim_minutes())
    held = list(
        Claim.objects.filter(
            user=user, dataset_id=dataset_id, expires_at__gt=now, sample__status=SampleStatus.QUEUED
        )
        .order_by("-returned", "claimed_at", "id")
        .values_list("sample_id", flat=True)
    )
    # Someone still working keeps their claims alive; a returned claim keeps its longer hold.
    Claim.objects.filter(
        user=user, sample_id__in=held, returned=False, expires_at__lt=expires
    ).update(expires_at=expires)
    wanted = size - len(held)
    attempts = 0
    claimed = list(held)
    while wanted > 0 and attempts < 4:
        attempts += 1
        candidates = list(
            ordered(
                waiting_samples(dataset_id, filters)
                .exclude(id__in=claimed)
                .filter(~_live_claim_by_other(user)),
                "newest" if filters.order == "newest" else "hardness",
            ).values_list("id", flat=True)[: wanted * 2]
        )
        if filters.order == "random":
            random.shuffle(candidates)
        candidates = candidates[:wanted]
        if not candidates:
            break
        # An expired claim is a free sample: drop it (only while it is still expired).
        Claim.objects.filter(sample_id__in=candidates, expires_at__lte=now).delete()
        Claim.objects.bulk_create(
            [
                Claim(sample_id=sample_id, dataset_id=dataset_id, user=user, expires_at=expires)
                for sample_id in candidates
            ],
            ignore_conflicts=True,
        )
        won = set(
            Claim.objects.filter(sample_id__in=candidates, user=user).values_list(
                "sample_id", flat=True
            )
        )
        got = [sample_id for sample_id in candidates if sample_id in won]
        claimed.extend(got)
        wanted -= len(got)
    return claimed


def claim_sample(sample_id: int, user, dataset_id: int) -> int:
    """Claims one given sample ("label this" on the sample page), queued or not.

    Raises Sample.DoesNotExist (not in the dataset) or ClaimedByOther."""
    sample = Sample.objects.only("id", "dataset_id").get(pk=sample_id, dataset_id=dataset_id)
    now = timezone.now()
    expires = now + timedelta(minutes=claim_minutes())
    Claim.objects.filter(sample_id=sample.pk, expires_at__lte=now).delete()
    Claim.objects.bulk_create(
        [Claim(sample_id=sample.pk, dataset_id=dataset_id, user=user, expires_at=expires)],
        ignore_conflicts=True,
    )
    check_may_label(sample, user)
    Claim.objects.filter(sample_id=sample.pk, user=user, expires_at__lt=expires).update(
        expires_at=expires
    )
    return sample.pk


def release_my_claims(user, sample_ids) -> int:
    """A labeler leaving the editor gives back what they held (not samples a reviewer returned
    to them: those stay theirs for returned_claim_hours)."""
    deleted, _ = Claim.objects.filter(
        user=user, sample_id__in=list(sample_ids), returned=False
    ).delete()
    return deleted


def release_claims(dataset_id: int, *, user_id: int | None = None) -> int:
    """An admin frees claims of a dataset (all, or one labeler's); returns how many."""
    claims = Claim.objects.filter(dataset_id=dataset_id)
    if user_id is not None:
        claims = claims.filter(user_id=user_id)
    deleted, _ = claims.delete()
    return deleted


def check_may_label(sample: Sample, user) -> None:
    """Raises ClaimedByOther when someone else holds a live claim on the sample."""
    claim = (
        Claim.objects.filter(sample_id=sample.pk, expires_at__gt=timezone.now())
        .select_related("user")
        .first()
    )
    if claim is not None and claim.user_id != getattr(user, "pk", None):
        until = timezone.localtime(claim.expires_at).strftime("%H:%M")
        raise ClaimedByOther(
            f"Sample {sample.pk} is claimed by {claim.user.get_username()} until {until}: "
            "nothing was saved. Take another image from the queue."
        )


# --- Saving, skipping, queueing ------------------------------------------------------------


def reviewing_loops(dataset_id: int) -> list[int]:
    return list(
        ReviewSetting.objects.filter(loop__dataset_id=dataset_id, review_labels=True).values_list(
            "loop_id", flat=True
        )
    )


def dataset_reviews(dataset_id: int) -> bool:
    """A dataset's labels wait for review when any loop that trains on it reviews."""
    return bool(reviewing_loops(dataset_id))


@dataclass
class SavedLabel:
    annotation: Annotation
    warnings: list[str]
    held_for_review: bool


def save_label(
    sample_id: int,
    boxes: list[LabeledBox],
    *,
    user,
    base_revision: int | None,
    source: str = AnnotationSource.MANUAL,
) -> SavedLabel:
    """The labeling page's (and the API's) save: claim check, review hold, then the one writer.

    Raises ClaimedByOther, datasets.StaleRevision or BoxRejected; nothing is stored then."""
    sample = Sample.objects.only("id", "dataset_id").get(pk=sample_id)
    if user is not None:
        check_may_label(sample, user)
    hold = user is not None and dataset_reviews(sample.dataset_id)
    with transaction.atomic():
        annotation, warnings = datasets.submit_annotation(
            sample_id,
            boxes,
            user=user,
            source=source,
            base_revision=base_revision,
            hold_for_review=hold,
        )
        # An earlier revision still waiting is replaced by this one.
        LabelReview.objects.filter(sample_id=sample_id, state=ReviewState.PENDING).update(
            state=ReviewState.SUPERSEDED, decided_at=timezone.now()
        )
        if hold:
            LabelReview.objects.create(
                annotation=annotation,
                sample_id=sample_id,
                dataset_id=sample.dataset_id,
                labeler=user,
            )
        if user is not None:
            Claim.objects.filter(sample_id=sample_id).delete()
    return SavedLabel(annotation=annotation, warnings=warnings, held_for_review=hold)


def skip_sample(
    sample_id: int, *, user, reason: str, note: str = "", base_revision: int | None = None
) -> Skip:
    """`base_revision`: the revision the labeler saw (0 for none); a skip from an editor that
    did not see a newer label is refused (datasets.StaleRevision), as a save from it would be,
    so that it cannot take that label out of training."""
    if reason not in SkipReason.values:
        raise LabelingError(
            f"Unknown skip reason {reason!r}; choose from {', '.join(SkipReason.values)}."
        )
    sample = Sample.objects.only("id", "dataset_id").get(pk=sample_id)
    check_may_label(sample, user)
    with transaction.atomic():
        locked = Sample.objects.select_for_update().get(pk=sample_id)
        newest = datasets.latest_revision(locked)
        if base_revision is not None and base_revision != newest:
            raise datasets.StaleRevision(
                f"Sample {sample_id} was labeled meanwhile (revision {newest}; you saw "
                f"{base_revision or 'none'}): nothing was skipped. Reload it to see the label."
            )
        skip = Skip.objects.create(sample_id=sample_id, user=user, reason=reason, note=note[:500])
        Sample.objects.filter(pk=sample_id).update(status=SampleStatus.SKIPPED)
        Claim.objects.filter(sample_id=sample_id).delete()
        dataset_counts.invalidate(sample.dataset_id)  # an update() sends no post_save
    return skip


def set_status(sample_id: int, status: str, *, user, reason: str = "", note: str = "") -> Sample:
    """A status set through the API (PATCH /api/v1/samples/<id>/): refused (ClaimedByOther)
    while another labeler holds the sample, as the editor and the annotation API refuse; a skip
    goes through skip_sample, so that it is recorded with its reason (default "other")."""
    sample = Sample.objects.only("id", "dataset_id").get(pk=sample_id)
    check_may_label(sample, user)
    if status == SampleStatus.SKIPPED:
        skip_sample(sample_id, user=user, reason=reason or SkipReason.OTHER, note=note)
        return Sample.objects.get(pk=sample_id)
    return datasets.set_sample_status(sample_id, status)


def queue_sample(sample_id: int) -> None:
    """Puts a sample (back) in the queue for labeling."""
    Sample.objects.filter(pk=sample_id).update(status=SampleStatus.QUEUED)
    for (dataset_id,) in Sample.objects.filter(pk=sample_id).values_list("dataset_id"):
        dataset_counts.invalidate(dataset_id)  # an update() sends no post_save


# --- Review --------------------------------------------------------------------------------


def set_review(loop_id: int, enabled: bool) -> ReviewSetting:
    setting, _ = ReviewSetting.objects.update_or_create(
        loop_id=loop_id, defaults={"review_labels": enabled}
    )
    return setting


def loop_reviews(loop_id: int) -> bool:
    return ReviewSetting.objects.filter(loop_id=loop_id, review_labels=True).exists()


def _pending_review(review_id: int) -> LabelReview:
    review = LabelReview.objects.select_for_update().get(pk=review_id)
    if review.state != ReviewState.PENDING:
        raise LabelingError(f"This label was already {review.get_state_display()}.")
    return review


def accept_review(review_id: int, *, reviewer, comment: str = "") -> LabelReview:
    """The held revision becomes current; labels_changed (source="review") goes out."""
    with transaction.atomic():
        review = _pending_review(review_id)
        datasets.accept_revision(review.annotation_id, user=reviewer)
        review.state = ReviewState.ACCEPTED
        review.reviewer = reviewer
        review.comment = comment[:2000]
        review.decided_at = timezone.now()
        review.save()
    return review


def reject_review(review_id: int, *, reviewer, comment: str) -> LabelReview:
    """Back to the queue, reserved for its labeler first (for returned_claim_hours)."""
    if not comment.strip():
        raise LabelingError("Say what is wrong: a rejection needs a comment for the labeler.")
    with transaction.atomic():
        review = _pending_review(review_id)
        review.state = ReviewState.REJECTED
        review.reviewer = reviewer
        review.comment = comment.strip()[:2000]
        review.decided_at = timezone.now()
        review.save()
        Sample.objects.filter(pk=review.sample_id).update(status=SampleStatus.QUEUED)
        Claim.objects.filter(sample_id=review.sample_id).delete()
        dataset_counts.invalidate(review.dataset_id)  # an update() sends no post_save
        if review.labeler_id is not None:
            try:
                with transaction.atomic():
                    Claim.objects.create(
                        sample_id=review.sample_id,
                        dataset_id=review.dataset_id,
                        user_id=review.labeler_id,
                        expires_at=timezone.now() + timedelta(hours=returned_claim_hours()),
                        returned=True,
                    )
            except IntegrityError:  # someone claimed it this very moment: they keep it
                pass
    return review


# --- What the editor needs for one sample --------------------------------------------------


def normalized_prediction(prediction, class_names: list[str]) -> list[dict]:
    """The device's boxes as {class_name, score, x1..y2}; malformed entries are left out."""
    if isinstance(prediction, dict):
        prediction = prediction.get("boxes")
    if not isinstance(prediction, list):
        return []
    boxes = []
    for item in prediction:
        if not isinstance(item, dict):
            continue
        try:
            coordinates = [float(item[key]) for key in ("x1", "y1", "x2", "y2")]
            score = float(item.get("score", 1.0) if item.get("score") is not None else 1.0)
        except (KeyError, TypeError, ValueError):
            continue
        name = str(item.get("class_name", ""))
        if coordinates[2] <= coordinates[0] or coordinates[3] <= coordinates[1]:
            continue
        boxes.append(
            {
                "class_name": name,
                "score": round(score, 4),
                "known_class": name in class_names,
                "x1": coordinates[0],
                "y1": coordinates[1],
                "x2": coordinates[2],
                "y2": coordinates[3],
                "w": coordinates[2] - coordinates[0],
                "h": coordinates[3] - coordinates[1],
            }
        )
    return boxes


def editor_payloads(sample_ids: list[int]) -> list[dict]:
    """What the editor needs per sample, in the given order, in four queries for the batch."""
    from django.urls import reverse

    samples = {s.pk: s for s in Sample.objects.filter(pk__in=sample_ids).select_related("dataset")}
    newest = {}
    for annotation in Annotation.objects.filter(sample_id__in=sample_ids).order_by(
        "sample_id", "revision"
    ):
        newest[annotation.sample_id] = annotation
    boxes = datasets.boxes_by_annotation(a.pk for a in newest.values())
    reviews = {
        r.sample_id: r
        for r in LabelReview.objects.filter(
            sample_id__in=sample_ids, state=ReviewState.REJECTED
        ).order_by("decided_at")
    }
    payloads = []
    for sample_id in sample_ids:
        sample = samples.get(sample_id)
        if sample is None:
            continue
        annotation = newest.get(sample_id)
        review = reviews.get(sample_id)
        payloads.append(
            {
                "id": sample.pk,
                "dataset": sample.dataset_id,
                "width": sample.width,
                "height": sample.height,
                "name": sample.original_name,
                "image_url": reverse("datasets:image", args=[sample.pk]),
                "page_url": reverse("labeling:sample", args=[sample.pk]),
                "base_revision": annotation.revision if annotation else 0,
                "boxes": [b.as_dict() for b in boxes.get(annotation.pk, [])] if annotation else [],
                "prediction": normalized_prediction(sample.prediction, sample.dataset.class_names),
                "hardness": sample.hardness_score,
                "mined_by": sample.mined_by,
                "status": sample.status,
                "rejected_comment": review.comment
                if review and annotation and review.annotation_id == annotation.pk
                else "",
            }
        )
    return payloads
