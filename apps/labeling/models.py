"""Who is labeling what (claims), why a sample was skipped, and the review of labels.

A Claim reserves one queued sample for one labeler until it expires; the unique sample column
is what makes two labelers never get the same image. A LabelReview holds a submitted revision
until a reviewer accepts it (only then does it become the sample's current annotation) or
rejects it (the sample goes back to the queue, reserved for its labeler first).
"""

from django.conf import settings
from django.db import models


class Claim(models.Model):
    sample = models.OneToOneField(
        "datasets.Sample", on_delete=models.CASCADE, related_name="labeling_claim"
    )
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labeling_claims"
    )
    claimed_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    returned = models.BooleanField(
        default=False, help_text="A rejected label given back to its labeler to fix."
    )

    class Meta:
        ordering = ["claimed_at", "id"]
        indexes = [
            models.Index(fields=["dataset", "expires_at"], name="claim_dataset_expiry"),
            models.Index(fields=["user", "expires_at"], name="claim_user_expiry"),
        ]

    def __str__(self):
        return f"sample {self.sample_id} claimed by {self.user_id} until {self.expires_at:%H:%M}"


class SkipReason(models.TextChoices):
    UNCLEAR = "unclear", "unclear: cannot tell what is there"
    BAD_IMAGE = "bad_image", "bad image (blurred, dark, broken)"
    OUT_OF_SCOPE = "out_of_scope", "not what this dataset is about"
    OTHER = "other"


class Skip(models.Model):
    sample = models.ForeignKey("datasets.Sample", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=20, choices=SkipReason.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"sample {self.sample_id} skipped ({self.reason})"


class ReviewSetting(models.Model):
    """Per loop: whether its labels need a reviewer's accept before they count."""

    loop = models.OneToOneField("loops.Loop", on_delete=models.CASCADE, related_name="+")
    review_labels = models.BooleanField(default=False)

    def __str__(self):
        return f"loop {self.loop_id}: review {'on' if self.review_labels else 'off'}"


class ReviewState(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded", "superseded by a later revision"


class LabelReview(models.Model):
    annotation = models.OneToOneField(
        "datasets.Annotation", on_delete=models.CASCADE, related_name="review"
    )
    sample = models.ForeignKey("datasets.Sample", on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    state = models.CharField(
        max_length=10, choices=ReviewState.choices, default=ReviewState.PENDING
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["dataset", "state", "id"], name="review_dataset_state")]
        permissions = [("review_labels", "Can accept or reject submitted labels")]

    def __str__(self):
        return f"review of {self.annotation_id}: {self.state}"
