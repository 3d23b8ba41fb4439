from django import forms

from apps.triggers import services
from apps.triggers.conditions import OVERALL_METRICS
from apps.triggers.dryrun import MAX_DAYS
from apps.triggers.models import Comparison, IntervalUnit, RuleAction, RuleKind


def _optional_choices(choices):
    return [("", "—")] + list(choices)


class RuleForm(forms.Form):
    """Types only; services.check_rule (shared with the API) decides what is valid."""

    name = forms.CharField(max_length=120)
    kind = forms.ChoiceField(choices=RuleKind.choices)
    action = forms.ChoiceField(choices=RuleAction.choices, initial=RuleAction.TRAIN)
    enabled = forms.BooleanField(required=False, initial=True)
    every = forms.IntegerField(required=False, label="Every")
    every_unit = forms.ChoiceField(choices=IntervalUnit.choices, initial=IntervalUnit.MINUTES)
    cron = forms.CharField(
        required=False,
        max_length=120,
        label="or cron",
        help_text="Five fields, e.g. 0 2 * * * (02:00 every day, in the time zone below).",
    )
    window_start = forms.TimeField(
        required=False,
        label="Window from",
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
    )
    window_end = forms.TimeField(
        required=False,
        label="to",
        help_text="HH:MM; an end before the start wraps midnight (22:00–02:00)",
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
    )
    time_zone = forms.CharField(max_length=64, initial="UTC", help_text="IANA, e.g. Europe/Berlin")
    min_samples = forms.IntegerField(required=False, label="New labels at least")
    class_name = forms.ChoiceField(required=False, label="Only class")
    metric = forms.ChoiceField(
        required=False, choices=_optional_choices((m, m) for m in OVERALL_METRICS)
    )
    comparison = forms.ChoiceField(required=False, choices=_optional_choices(Comparison.choices))
    threshold = forms.FloatField(required=False)
    min_fresh_samples = forms.IntegerField(required=False, label="Fresh samples at least")
    cooldown_minutes = forms.IntegerField(initial=0, label="Cooldown (minutes)")
    dry_run_days = forms.IntegerField(
        required=False, initial=7, min_value=1, max_value=MAX_DAYS, label="Dry run over days"
    )

    def __init__(self, *args, loop, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop = loop
        self.values = None
        self.fields["class_name"].choices = [("", "all classes")] + [
            (name, name) for name in loop.dataset.class_names
        ]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        data = {k: v for k, v in cleaned.items() if k in services.EDITABLE_FIELDS}
        try:
            self.values = services.check_rule(self.loop, data)
        except services.RuleInvalid as exc:
            for field, message in exc.errors.items():
                self.add_error(field if field in self.fields else None, message)
        return cleaned

    FIELDSETS = [
        ("Rule", "", ["name", "kind", "action", "enabled", "cooldown_minutes"]),
        ("Schedule", "time", ["every", "every_unit", "cron"]),
        ("New labels", "sample_count", ["min_samples"]),
        ("Metric of the deployed version", "precision", ["metric", "comparison", "threshold",
                                                          "min_fresh_samples"]),
        ("Class", "sample_count precision", ["class_name"]),
        ("Daily window (optional, any rule)", "", ["window_start", "window_end", "time_zone"]),
        ("Dry run", "", ["dry_run_days"]),
    ]  # fmt: skip

    def fieldsets(self):
        """(legend, kinds it applies to, bound fields) for the template."""
        return [
            (legend, kinds, [self[name] for name in names])
            for legend, kinds, names in self.FIELDSETS
        ]
