from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import services
from apps.accounts.forms import DeviceTokenForm
from apps.accounts.models import DeviceToken
from apps.dashboard.confirm import confirm_first


@permission_required("accounts.add_devicetoken", raise_exception=True)
def device_tokens(request):
    issued = None
    form = DeviceTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        issued = services.create_device_token(
            name=form.cleaned_data["name"], created_by=request.user
        )
        form = DeviceTokenForm()
    return render(
        request,
        "accounts/device_tokens.html",
        {"form": form, "issued": issued, "tokens": DeviceToken.objects.all()},
    )


@require_POST
@permission_required("accounts.change_devicetoken", raise_exception=True)
def revoke_token(request, token_id: int):
    token = get_object_or_404(DeviceToken, pk=token_id)
    asked = confirm_first(
        request,
        f"Revoke token {token}? Devices using it are refused from now on.",
        "Revoke",
        danger=True,
    )
    if asked:
        return asked
    token = services.revoke_device_token(token_id)
    messages.success(request, f"Token {token} revoked.")
    return redirect("accounts:device_tokens")
