"""An incremental-learning loop and its model registry.

A Loop ties a dataset, an algorithm YAML and a deploy gate together; every model version,
evaluation and deployment belongs to one loop. Artifacts are immutable once written: deploy
and rollback only move `Loop.deployed_version` and write a Deployment row.
"""

from django.conf import settings
from django.db import models


class Loop(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.PROTECT, related_name="loops")
    algorithm_yaml = models.TextField(help_text="Base model and miner with hyperparameters.")
    deployed_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The deploy gate. Absolute bounds apply always; gains and forgetting need a deployed baseline.
    gate_min_metrics = models.JSONField(
        default=dict, blank=True, help_text='Minimum values on the edge set, e.g. {"f1": 0.6}.'
    )
    gate_min_gain = models.JSONField(
        default=dict,
        blank=True,
        help_text='Minimum gain over the deployed version on the edge set, e.g. {"f1": 0.01}.',
    )
    gate_per_class_gain = models.BooleanField(
        default=False, help_text="Apply the minimum gains to every class too."
    )
    gate_max_forgetting = models.FloatField(
        null=True,
        blank=True,
        default=0.02,
        help_text="Largest allowed drop of mAP on the regression set (0.02 = two points).",
    )
    gate_min_edge_images = models.PositiveIntegerField(
        default=1,
        help_text="Fewest labeled edge evaluation images the gate judges on; with fewer, its "
        "bounds and gains use the regression set (one box moves F1 a lot on a few images).",
    )
    auto_deploy = models.BooleanField(default=True, help_text="Deploy a version that passes.")
    auto_evaluate = models.BooleanField(default=True, help_text="Evaluate after training.")
    retry_lost_jobs = models.BooleanField(
        default=False, help_text="Start a training again when its worker died."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate_loop", "Can train, evaluate, deploy and roll back"),
            ("force_deploy", "Can deploy a version that failed its gate"),
        ]

    def __str__(self):
        return self.name

    @property
    def job_scope(self) -> str:
        return f"loop:{self.pk}"


class VersionSource(models.TextChoices):
    TRAINED = "trained"
    UPLOADED = "uploaded"
    IMPORTED = "imported", "imported from object storage"


class Stage(models.TextChoices):
    CANDIDATE = "candidate"
    DEPLOYED = "deployed"
    ARCHIVED = "archived", "archived (was deployed)"
    REJECTED = "rejected"


class ModelVersion(models.Model):
    loop = models.ForeignKey(Loop, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=VersionSource.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    train_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    artifact = models.FileField(max_length=300)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.PositiveBigIntegerField()
    litert = models.FileField(max_length=300, blank=True)
    litert_sha256 = models.CharField(max_length=64, blank=True)
    class_names = models.JSONField(default=list)
    # Lineage: the hash of the exact (sample id, annotation id) pairs it was trained on; the
    # pairs themselves are its TrainedSample rows (never loaded with the version: 100k pairs).
    snapshot_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    new_samples = models.PositiveIntegerField(default=0)
    replay_samples = models.PositiveIntegerField(default=0)
    algorithm_yaml = models.TextField(blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    train_summary = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.CANDIDATE)
    gate_passed = models.BooleanField(null=True, blank=True)
    gate_reasons = models.JSONField(default=list, blank=True)
    source_uri = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["loop", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["loop", "number"], name="version_number_per_loop"),
        ]

    def __str__(self):
        return f"{self.loop} v{self.number}"

    @property
    def label(self) -> str:
        return f"v{self.number}"


class TrainedSample(models.Model):
    """One (sample, annotation revision) pair of a trained version's snapshot.

    These rows are the snapshot (``ModelVersion.snapshot_sha256`` is its hash); they make the
    database refuse to delete a sample or revision that a version was trained on, so lineage
    cannot break.
    """

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="trained_samples"
    )
    sample = models.ForeignKey("datasets.Sample", on_delete=models.PROTECT, related_name="+")
    annotation = models.ForeignKey(
        "datasets.Annotation", on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "sample"], name="trained_sample_once"),
        ]

    def __str__(self):
        return f"{self.version} (trained on sample {self.sample_id})"


class EvaluationSet(models.TextChoices):
    EDGE = "edge", "edge evaluation set"
    REGRESSION = "regression", "regression set"


class Evaluation(models.Model):
    """Metrics of one version on one evaluation set, with the deployed baseline on the same data."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluation_set = models.CharField(max_length=10, choices=EvaluationSet.choices)
    image_count = models.PositiveIntegerField()
    data_sha256 = models.CharField(max_length=64)
    metrics = models.JSONField()
    baseline = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    baseline_metrics = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.version} on the {self.evaluation_set} set"

    def change(self, metric: str) -> float | None:
        """This version minus the deployed baseline; on the regression set, -forgetting."""
        if not self.baseline_metrics:
            return None
        return self.metrics[metric] - self.baseline_metrics[metric]

    @property
    def map_change(self) -> float | None:
        return self.change("mAP")

    @property
    def f1_change(self) -> float | None:
        return self.change("f1")


class DeploymentAction(models.TextChoices):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    FORCE = "force", "forced deploy"


class Deployment(models.Model):
    """One move of a loop's deployed pointer: who or what, when, from which version, why."""

    loop = models.ForeignKey(Loop, on_delete=models.CASCADE, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=10, choices=DeploymentAction.choices)
    started_by = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.action} {self.version} ({self.created_at:%Y-%m-%d %H:%M})"
