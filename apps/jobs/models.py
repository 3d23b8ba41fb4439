from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobTrigger(models.TextChoices):
    MANUAL = "manual"
    RULE = "rule"
    API = "api"


class Job(models.Model):
    """One unit of background work (system check, training, evaluation, deploy...)."""

    kind = models.CharField(max_length=40, db_index=True)
    status = models.CharField(
        max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=10, choices=JobTrigger.choices)
    scope = models.CharField(
        max_length=60,
        blank=True,
        help_text="What the job works on, e.g. 'loop:3'. One active job per kind and scope.",
    )
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    chart = models.JSONField(
        default=list, blank=True, help_text="Points reported while running, e.g. step and loss."
    )
    log = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    started_by = models.CharField(
        max_length=200, help_text="Who or what started it: a user, a rule, a device."
    )
    # The device whose token started it (an import from an edge client): that device may read it.
    device = models.ForeignKey(
        "accounts.DeviceToken",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="job_progress_at_most_100"
            ),
            # Two clicks or two tabs start one training of a loop, not two.
            models.UniqueConstraint(
                fields=["kind", "scope"],
                condition=models.Q(status__in=["queued", "running"]) & ~models.Q(scope=""),
                name="one_active_job_per_kind_and_scope",
            ),
        ]

    def __str__(self):
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
