from django import forms


class DeviceTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. line-3-camera")
