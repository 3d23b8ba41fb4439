from django import forms

from apps.loops.models import Loop


class DeviceTokenScopeForm(forms.Form):
    all_loops = forms.BooleanField(
        required=False,
        label="Every loop",
        help_text="Unscoped: the token may predict, upload and read on every loop.",
    )
    loops = forms.ModelMultipleChoiceField(
        queryset=Loop.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The loops (and so the datasets) this device may use.",
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("all_loops") and not cleaned.get("loops"):
            raise forms.ValidationError("Choose the loops this device may use, or every loop.")
        return cleaned


class DeviceTokenForm(DeviceTokenScopeForm):
    name = forms.CharField(max_length=100, help_text="e.g. line-3-camera")

    field_order = ["name", "loops", "all_loops"]
