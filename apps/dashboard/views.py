from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render

from apps.accounts.roles import role_of
from apps.dashboard.loop_cards import loop_cards
from apps.jobs.models import Job
from apps.loops.job_links import attach_links, light_jobs
from apps.ops.health import check_health


def home(request):
    can_view_jobs = request.user.has_perm("jobs.view_job")
    health = check_health()
    return render(
        request,
        "dashboard/home.html",
        {
            "role": role_of(request.user),
            "health": health,
            "recent_jobs": (
                attach_links(list(light_jobs(Job.objects.all())[:10])) if can_view_jobs else []
            ),
            "cards": (
                loop_cards(health_ok=health["ok"])
                if request.user.has_perm("loops.view_loop")
                else []
            ),
        },
    )


# --- Error pages inside the layout (handler403/404/500 in ilportal/urls.py) ----------------------


def _error(request, status: int, title: str, text: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": text}, status=status)
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "text": text},
        status=status,
    )


def page_not_found(request, exception=None):
    return _error(
        request,
        404,
        "Page not found",
        "There is nothing at this address. It may have been deleted.",
    )


def permission_denied(request, exception=None):
    reason = str(exception) if exception and str(exception) else ""
    return _error(
        request,
        403,
        "Not allowed",
        reason or "Your role does not allow this. Ask an admin if you need it.",
    )


def server_error(request):
    try:
        return _error(
            request,
            500,
            "Something went wrong",
            "The server failed to answer this request. It was logged; try again in a moment.",
        )
    except Exception:  # the layout itself failed (e.g. the database is down): plain text
        return HttpResponseServerError("Server error: the request failed and was logged.")
