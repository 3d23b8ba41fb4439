"""The confirm step of deploying and destructive verbs, with or without JavaScript."""

from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def confirm_first(request, question: str, button: str, *, danger: bool = False, keep=()):
    """A deploying or destructive verb runs only when the POST says confirmed=yes. The page's
    <dialog> adds it after asking; without JavaScript, this confirm page asks instead."""
    if request.POST.get("confirmed") == "yes":
        return None
    return render(
        request,
        "confirm.html",
        {
            "question": question,
            "button": button,
            "danger": danger,
            "action": request.path,
            "keep": {name: request.POST.get(name, "") for name in keep},
            "back": _same_site(request, request.headers.get("Referer", "")),
        },
    )


def _same_site(request, url: str) -> str:
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if allowed else ""
