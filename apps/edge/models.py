"""The edge half of a loop: what a loop keeps of the images devices send (intake policy), what
it saw (intake records), the devices that talk to it, and the LiteRT decoder of each version.
"""

from django.db import models


class IntakeMode(models.TextChoices):
    NOTHING = "nothing", "store nothing"
    HARD = "hard", "only hard images"
    SAMPLE = "sample", "a sampled share plus the hard ones"


class IntakePolicy(models.Model):
    """Which predicted images a loop stores, and how many hard ones it queues for labeling."""

    loop = models.OneToOneField(
        "loops.Loop", on_delete=models.CASCADE, related_name="intake_policy"
    )
    mode = models.CharField(max_length=10, choices=IntakeMode.choices, default=IntakeMode.HARD)
    sample_percent = models.FloatField(
        default=0.0, help_text="Share (0-100 %) of the images that are not hard, stored unlabeled."
    )
    hard_per_hour = models.PositiveIntegerField(
        default=100, help_text="Hard examples queued per hour at most; the rest are counted."
    )
    hard_per_day = models.PositiveIntegerField(
        default=1000, help_text="Hard examples queued per day (24 h) at most."
    )
    duplicate_window = models.PositiveIntegerField(
        default=200, help_text="A new image is compared with this many of the last stored ones."
    )
    duplicate_distance = models.PositiveSmallIntegerField(
        default=5,
        help_text="Perceptual hashes this close (differing bits of 64) count as a near-duplicate.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"intake of {self.loop}: {self.get_mode_display()}"


class IntakeOutcome(models.TextChoices):
    QUEUED = "queued", "stored and queued for labeling"
    STORED = "stored", "stored (sampled share)"
    DUPLICATE = "duplicate", "near-duplicate, not stored"
    OVER_BUDGET = "over_budget", "over the hard-example budget, not stored"


class IntakeRecord(models.Model):
    """One image the intake looked at for storing: the budget and duplicate window read these."""

    loop = models.ForeignKey("loops.Loop", on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(
        "EdgeDevice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.CharField(max_length=12, choices=IntakeOutcome.choices)
    image_hash = models.BigIntegerField(help_text="64-bit perceptual hash, stored signed.")
    hard = models.BooleanField()
    hardness = models.FloatField()
    sample = models.ForeignKey(
        "datasets.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["loop", "outcome", "created_at"], name="intake_loop_outcome_time"),
            models.Index(fields=["loop", "id"], name="intake_loop_id"),
        ]

    def __str__(self):
        return f"{self.loop_id}: {self.outcome} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class EdgeDevice(models.Model):
    """A device token's bookkeeping on one loop: what the fleet page shows."""

    token = models.ForeignKey(
        "accounts.DeviceToken", on_delete=models.CASCADE, related_name="edge_devices"
    )
    loop = models.ForeignKey("loops.Loop", on_delete=models.CASCADE, related_name="edge_devices")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    version = models.ForeignKey(
        "loops.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version that last answered it, or that its agent reports running.",
    )
    images_sent = models.PositiveBigIntegerField(default=0)
    hard_sent = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    health = models.JSONField(default=dict, blank=True, help_text="What its agent last reported.")

    class Meta:
        ordering = ["loop", "token__name"]
        constraints = [
            models.UniqueConstraint(fields=["token", "loop"], name="edge_device_per_token_loop"),
        ]

    def __str__(self):
        return f"{self.token.name} on {self.loop}"


class UploadReceipt(models.Model):
    """An upload's idempotency key, claimed before the upload is looked at: while ``response`` is
    empty the first request is still being answered (a concurrent retry waits for it, then gets
    its answer); a request that fails deletes its claim, so that a retry can succeed. The key is
    bound to the loop and the image it was first sent with: the same key with another loop or
    another image is refused, not answered with another upload's answer."""

    token = models.ForeignKey("accounts.DeviceToken", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    loop = models.ForeignKey(
        "loops.Loop",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The loop the upload went to (empty on receipts kept before keys were bound).",
    )
    image_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the uploaded image's bytes."
    )
    response = models.JSONField(
        null=True, blank=True, help_text="The answer; empty while the first request runs."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="upload_receipt_once"),
        ]

    def __str__(self):
        return f"{self.token_id}:{self.key}"


class EdgeModel(models.Model):
    """What serving a version with LiteRT needs beside its .tflite: the box decoder's config."""

    version = models.OneToOneField(
        "loops.ModelVersion", on_delete=models.CASCADE, related_name="edge_model"
    )
    decoder_config = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"edge model of {self.version}"
