"""Trigger rules of a loop, the firings they made, and the log of their decisions.

A rule is read from the database at every evaluation, so an edit takes effect at once.
`Firing` rows make a firing happen exactly once: (rule, key) is unique, and the key names the
firing window (a schedule slot, a measured fresh set, or the rule's firing sequence number).
"""

from django.conf import settings
from django.db import models


class RuleKind(models.TextChoices):
    TIME = "time"
    SAMPLE_COUNT = "sample_count", "sample count"
    PRECISION = "precision"


class RuleAction(models.TextChoices):
    TRAIN = "train"
    EVALUATE = "evaluate", "evaluate the deployed version"


class IntervalUnit(models.TextChoices):
    MINUTES = "minutes"
    HOURS = "hours"


class Comparison(models.TextChoices):
    BELOW = "below", "below a bound"
    DROP = "drop", "dropped since deploy by at least"


class TriggerRule(models.Model):
    loop = models.ForeignKey("loops.Loop", on_delete=models.CASCADE, related_name="trigger_rules")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=12, choices=RuleKind.choices)
    action = models.CharField(max_length=10, choices=RuleAction.choices, default=RuleAction.TRAIN)
    enabled = models.BooleanField(default=True)
    # Time rules: every N minutes/hours, or a cron expression (one of the two).
    every = models.PositiveIntegerField(null=True, blank=True)
    every_unit = models.CharField(
        max_length=7, choices=IntervalUnit.choices, default=IntervalUnit.MINUTES
    )
    cron = models.CharField(max_length=120, blank=True)
    # Any rule: only inside this daily window (may wrap midnight), in this time zone.
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    # Sample-count rules.
    min_samples = models.PositiveIntegerField(null=True, blank=True)
    # Sample-count and precision rules: one class only (blank: all).
    class_name = models.CharField(max_length=100, blank=True)
    # Precision rules.
    metric = models.CharField(max_length=12, blank=True)
    comparison = models.CharField(max_length=6, choices=Comparison.choices, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    min_fresh_samples = models.PositiveIntegerField(null=True, blank=True)
    cooldown_minutes = models.PositiveIntegerField(default=0)

    # State, written by the evaluator under a row lock.
    anchor_at = models.DateTimeField(help_text="When the schedule started (creation or edit).")
    last_slot_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    fire_count = models.PositiveIntegerField(default=0)
    last_verdict = models.CharField(max_length=12, blank=True)
    last_reason = models.CharField(max_length=30, blank=True)
    last_message = models.CharField(max_length=300, blank=True)
    last_inputs = models.JSONField(default=dict, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    idle_evaluations = models.PositiveBigIntegerField(
        default=0, help_text="Evaluations that changed nothing (counted, not logged)."
    )
    measure_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    measured_key = models.CharField(max_length=64, blank=True)
    measured_value = models.FloatField(null=True, blank=True)
    measured_count = models.PositiveIntegerField(default=0)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["loop", "name", "id"]
        permissions = [("fire_triggerrule", "Can fire a trigger rule by hand")]

    def __str__(self):
        return f"{self.loop}: {self.name}"


class Firing(models.Model):
    """One firing of a rule. The unique key is what makes two evaluators start one job."""

    rule = models.ForeignKey(TriggerRule, on_delete=models.CASCADE, related_name="firings")
    key = models.CharField(max_length=80)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "key"], name="one_firing_per_rule_and_key")
        ]

    def __str__(self):
        return f"{self.rule} fired ({self.key})"


class Verdict(models.TextChoices):
    FIRED = "fired"
    SUPPRESSED = "suppressed", "would fire, but not now"
    WAITING = "waiting", "condition not met"
    MEASURING = "measuring", "measuring the deployed version"
    ERROR = "error"


class Decision(models.Model):
    """An evaluation that changed a rule's state or fired it."""

    rule = models.ForeignKey(TriggerRule, on_delete=models.CASCADE, related_name="decisions")
    at = models.DateTimeField(db_index=True)
    cause = models.CharField(max_length=20, help_text="beat, labels, deploy, manual, edit")
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    reason = models.CharField(max_length=30, blank=True)
    message = models.CharField(max_length=300)
    inputs = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idle_before = models.PositiveBigIntegerField(
        default=0, help_text="Unchanged evaluations since the previous logged decision."
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rule", "-at"], name="decision_rule_at")]

    def __str__(self):
        return f"{self.rule} {self.verdict} {self.reason} at {self.at:%Y-%m-%d %H:%M:%S}"
