from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.accounts import services
from apps.accounts.forms import DeviceTokenForm, DeviceTokenScopeForm
from apps.accounts.models import DeviceToken
from apps.dashboard.confirm import confirm_first


@never_cache  # the page that shows a new token's raw value must not be kept (history, bfcache)
@permission_required("accounts.add_devicetoken", raise_exception=True)
def device_tokens(request):
    issued = None
    form = DeviceTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        issued = services.create_device_token(
            name=form.cleaned_data["name"],
            created_by=request.user,
            loops=form.cleaned_data["loops"],
            all_loops=form.cleaned_data["all_loops"],
        )
        form = DeviceTokenForm()
    tokens = DeviceToken.objects.prefetch_related("loops")
    return render(
        request,
        "accounts/device_tokens.html",
        {"form": form, "issued": issued, "tokens": tokens},
    )


@permission_required("accounts.change_devicetoken", raise_exception=True)
def token_scope(request, token_id: int):
    token = get_object_or_404(DeviceToken, pk=token_id)
    initial = {"all_loops": token.all_loops, "loops": list(token.loops.all())}
    form = DeviceTokenScopeForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.set_device_token_scope(
            token.pk, loops=form.cleaned_data["loops"], all_loops=form.cleaned_data["all_loops"]
        )
        messages.success(request, f"Scope of {token} saved.")
        return redirect("accounts:device_tokens")
    return render(request, "accounts/token_scope.html", {"form": form, "token": token})


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
