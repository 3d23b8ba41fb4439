"""A sample's story for its page: revisions, what changed between them, versions trained on it."""

from dataclasses import dataclass, field

from apps.datasets.models import Annotation, Box, Sample
from apps.datasets.services import boxes_by_annotation
from apps.labeling.models import LabelReview
from apps.loops.models import TrainedSample

MOVED_PX = 0.5  # a matched box that moved less than this counts as unchanged
SAME_BOX_IOU = 0.3  # boxes of one class overlapping this much are "the same box, edited"


def colour(class_name: str, class_names: list[str]) -> int:
    """One of the 8 box colours of portal.css, by the class's position."""
    return class_names.index(class_name) % 8 if class_name in class_names else 7


def grid_boxes(boxes: list[Box], class_names: list[str]) -> list[dict]:
    return [
        {
            "class_name": box.class_name,
            "colour": colour(box.class_name, class_names),
            "x": box.x1,
            "y": box.y1,
            "w": box.x2 - box.x1,
            "h": box.y2 - box.y1,
        }
        for box in boxes
    ]


def _iou(a: Box, b: Box) -> float:
    width = min(a.x2, b.x2) - max(a.x1, b.x1)
    height = min(a.y2, b.y2) - max(a.y1, b.y1)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union


def describe_changes(old: list[Box], new: list[Box]) -> list[str]:
    """ "added cone", "removed vest", "moved or resized helmet", "cone → vest": greedy matching of
    the new boxes to the old ones by overlap (same class first)."""
    remaining = list(old)
    changes = []
    for box in new:
        best, best_iou = None, SAME_BOX_IOU
        for candidate in remaining:
            overlap = _iou(box, candidate) + (0.01 if candidate.class_name == box.class_name else 0)
            if overlap > best_iou:
                best, best_iou = candidate, overlap
        if best is None:
            changes.append(f"added {box.class_name}")
            continue
        remaining.remove(best)
        if best.class_name != box.class_name:
            changes.append(f"{best.class_name} → {box.class_name}")
        shift = max(
            abs(getattr(best, side) - getattr(box, side)) for side in ("x1", "y1", "x2", "y2")
        )
        if shift > MOVED_PX:
            changes.append(f"moved or resized {box.class_name} ({shift:.0f} px)")
    changes.extend(f"removed {box.class_name}" for box in remaining)
    return changes


@dataclass
class RevisionRow:
    annotation: Annotation
    is_current: bool
    grid_boxes: list[dict]
    changes: list[str]
    review: LabelReview | None = None
    box_count: int = 0
    classes: list[str] = field(default_factory=list)


def revision_history(sample: Sample) -> list[RevisionRow]:
    """Oldest first. Three queries whatever the number of revisions."""
    annotations = list(sample.annotations.select_related("created_by").order_by("revision"))
    boxes = boxes_by_annotation(a.pk for a in annotations)
    reviews = {
        r.annotation_id: r
        for r in LabelReview.objects.filter(sample=sample).select_related("reviewer")
    }
    rows, previous = [], []
    for annotation in annotations:
        mine = boxes.get(annotation.pk, [])
        changes = describe_changes(previous, mine)
        if annotation.revision == 1:
            changes = [f"{len(mine)} box(es)"] if mine else ["no objects"]
        elif not changes:
            changes = ["no change"]
        rows.append(
            RevisionRow(
                annotation=annotation,
                is_current=annotation.pk == sample.current_annotation_id,
                grid_boxes=grid_boxes(mine, sample.dataset.class_names),
                changes=changes,
                review=reviews.get(annotation.pk),
                box_count=len(mine),
            )
        )
        previous = mine
    return rows


def versions_trained_on(sample_id: int) -> list[TrainedSample]:
    return list(
        TrainedSample.objects.filter(sample_id=sample_id)
        .select_related("version__loop", "annotation")
        .order_by("-version__created_at")
    )
