from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from apps.accounts import login_throttle
from apps.accounts.client_address import client_address
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


class ThrottledSignIn:
    """A sign-in form's check that refuses an account and address with too many recent
    failures (apps.accounts.login_throttle), before the password is even looked at."""

    throttled = ""  # the refusal's message, for the page to show

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request.META) if self.request else ""
        wait = login_throttle.wait_s(username, address)
        if wait:
            self.throttled = (
                "Too many failed sign-ins to this account from your address: try again in "
                f"{login_throttle.minutes(wait)}."
            )
            raise forms.ValidationError(self.throttled, code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_throttle.record_failure(username, address)
            raise
        login_throttle.forget(username, address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledSignIn, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledSignIn, AdminAuthenticationForm):
    pass
