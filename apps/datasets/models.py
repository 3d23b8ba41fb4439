"""Datasets of images, their samples and the revisions of their annotations.

An Annotation is immutable once written: a new labeling makes a new revision, and the sample
points at its current one. Training (a later issue) freezes (sample id, annotation id) pairs.
"""

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    name = models.CharField(max_length=120, unique=True)
    class_names = models.JSONField(
        default=list, blank=True, help_text="Ordered: a class's index is its position here."
    )
    description = models.TextField(blank=True)
    train_percent = models.PositiveSmallIntegerField(
        default=80, help_text="Share of new samples put in the train split (from their hash)."
    )
    eval_percent = models.PositiveSmallIntegerField(
        default=10, help_text="Share put in the eval split; the rest goes to test."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(train_percent__lte=100)
                & models.Q(eval_percent__lte=100 - models.F("train_percent")),
                name="dataset_split_percents_at_most_100",
            ),
        ]

    def __str__(self):
        return self.name


class SampleSource(models.TextChoices):
    UPLOAD = "upload"
    DEVICE = "device"
    GENERATOR = "generator"


class Split(models.TextChoices):
    TRAIN = "train"
    EVAL = "eval"
    TEST = "test"


class SampleStatus(models.TextChoices):
    UNLABELED = "unlabeled"
    QUEUED = "queued", "queued for labeling"
    LABELED = "labeled"
    SKIPPED = "skipped"


class Sample(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    image = models.FileField(max_length=300)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_name = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=12, choices=SampleSource.choices)
    captured_at = models.DateTimeField(null=True, blank=True)
    split = models.CharField(max_length=5, choices=Split.choices)
    status = models.CharField(
        max_length=10, choices=SampleStatus.choices, default=SampleStatus.UNLABELED
    )
    current_annotation = models.ForeignKey(
        "Annotation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    thumbnail = models.FileField(max_length=300, blank=True)
    # Filled by later issues: the hard-example miner and the deployed model's pre-annotation.
    hardness_score = models.FloatField(null=True, blank=True)
    mined_by = models.CharField(max_length=60, blank=True)
    prediction = models.JSONField(null=True, blank=True)
    import_job = models.ForeignKey(
        "jobs.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The import that created it: a failed import removes exactly these.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sha256"], name="sample_unique_image"),
        ]
        indexes = [
            # Keyset pagination: each filter walks an index in id order.
            models.Index(fields=["dataset", "id"], name="sample_dataset_id"),
            models.Index(fields=["dataset", "status", "id"], name="sample_dataset_status_id"),
            models.Index(fields=["dataset", "split", "id"], name="sample_dataset_split_id"),
            models.Index(fields=["dataset", "source", "id"], name="sample_dataset_source_id"),
        ]

    def __str__(self):
        return f"{self.dataset} #{self.pk} {self.original_name}"


class AnnotationSource(models.TextChoices):
    MANUAL = "manual"
    IMPORT = "import"
    PREDICTION = "prediction"
    GENERATOR = "generator"


class Annotation(models.Model):
    """One revision of a sample's labels. Never changed after it is written."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="annotations")
    revision = models.PositiveIntegerField()
    source = models.CharField(max_length=12, choices=AnnotationSource.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # boxes.boxes_key of its boxes: revisions with equal keys hold the same labels (a re-save
    # of unchanged boxes is not a new label for the trigger rules).
    boxes_key = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["sample", "revision"]
        constraints = [
            models.UniqueConstraint(
                fields=["sample", "revision"], name="annotation_unique_revision"
            ),
        ]

    def __str__(self):
        return f"sample {self.sample_id} rev {self.revision}"


class Box(models.Model):
    """One box of an annotation revision, in image pixels."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="boxes")
    class_name = models.CharField(max_length=100, db_index=True)
    x1 = models.FloatField()
    y1 = models.FloatField()
    x2 = models.FloatField()
    y2 = models.FloatField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(x2__gt=models.F("x1")) & models.Q(y2__gt=models.F("y1")),
                name="box_not_empty",
            ),
        ]

    def __str__(self):
        return f"{self.class_name} ({self.x1:.0f}, {self.y1:.0f}, {self.x2:.0f}, {self.y2:.0f})"

    def as_dict(self) -> dict:
        return {
            "class_name": self.class_name,
            "x1": self.x1,
            "y1": self.y1,
            "x2": self.x2,
            "y2": self.y2,
        }


class DatasetCountsCache(models.Model):
    """The dataset page's counts, kept until a write to the dataset makes them stale.

    Every sample write and every labels_changed announcement adds one to ``generation``; the
    counts are valid while ``counts_generation`` equals it (see apps.datasets.counts).
    """

    dataset = models.OneToOneField(
        Dataset, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    generation = models.PositiveBigIntegerField(default=0)
    counts_generation = models.PositiveBigIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"counts of dataset {self.dataset_id} (generation {self.generation})"
