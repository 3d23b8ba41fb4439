from django import forms

from apps.edge.models import IntakePolicy
from apps.edge.services import POLICY_FIELDS


class IntakePolicyForm(forms.ModelForm):
    class Meta:
        model = IntakePolicy
        fields = list(POLICY_FIELDS)
        widgets = {"mode": forms.RadioSelect}

    def clean_sample_percent(self):
        value = self.cleaned_data["sample_percent"]
        if not 0 <= value <= 100:
            raise forms.ValidationError("A percentage: 0 to 100.")
        return value

    def clean_duplicate_distance(self):
        value = self.cleaned_data["duplicate_distance"]
        if value > 64:
            raise forms.ValidationError("At most 64 (bits of the hash).")
        return value
