from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.api_auth import DeviceTokenAuthentication
from apps.dashboard.confirm import confirm_first
from apps.jobs import events, services
from apps.jobs.kinds import KINDS
from apps.jobs.models import Job, JobStatus
from apps.loops.job_links import attach_links, light_jobs
from apps.loops.models import Loop

PAGE_SIZE = 25


def _filters(request) -> dict:
    """kind, status and loop from the query string; unknown values are ignored."""
    kind = request.GET.get("kind", "")
    status = request.GET.get("status", "")
    loop = request.GET.get("loop", "")
    return {
        "kind": kind if kind in KINDS else "",
        "status": status if status in JobStatus.values else "",
        "loop": loop if loop.isdigit() else "",
    }


@permission_required("jobs.view_job", raise_exception=True)
def job_list(request):
    chosen = _filters(request)
    jobs = light_jobs(Job.objects.select_related("created_by"))
    if chosen["kind"]:
        jobs = jobs.filter(kind=chosen["kind"])
    if chosen["status"]:
        jobs = jobs.filter(status=chosen["status"])
    if chosen["loop"]:
        jobs = jobs.filter(scope=f"loop:{chosen['loop']}")
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = attach_links(list(page.object_list))
    startable = [kind for kind in KINDS.values() if kind.on_jobs_page]
    query = "&".join(f"{key}={value}" for key, value in chosen.items() if value)
    return render(
        request,
        "jobs/job_list.html",
        {
            "page": page,
            "kinds": startable,
            "all_kinds": KINDS.values(),
            "statuses": JobStatus.values,
            "loops": Loop.objects.only("id", "name"),
            "chosen": chosen,
            "query": query,
        },
    )


@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    attach_links([job])
    return render(request, "jobs/job_detail.html", {"job": job, "state": events.job_state(job)})


@login_not_required
def job_state(request, job_id: int):
    """The job's state as JSON: for the job page (session), or for an edge client that sends its
    device token, which reads the jobs it started and gets JSON errors, never the login page."""
    if request.headers.get("Authorization", "").lower().startswith("bearer"):
        return _device_job_state(request, job_id)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not request.user.has_perm("jobs.view_job"):
        raise PermissionDenied
    # The page re-reads this whenever its WebSocket (re)connects, so nothing sent is lost.
    job = get_object_or_404(Job, pk=job_id)
    return JsonResponse({**events.job_state(job), "log": job.log})


def _device_job_state(request, job_id: int) -> JsonResponse:
    authentication = DeviceTokenAuthentication()
    try:
        authenticated = authentication.authenticate(request)
        if authenticated is None:
            raise AuthenticationFailed("Send 'Authorization: Bearer <device token>'.")
    except AuthenticationFailed as exc:
        response = JsonResponse({"detail": str(exc.detail)}, status=401)
        response["WWW-Authenticate"] = authentication.authenticate_header(request)
        return response
    token = authenticated[1]
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"detail": f"No job #{job_id}."}, status=404)
    if job.device_id != token.pk:
        return JsonResponse({"detail": "This device token did not start this job."}, status=403)
    return JsonResponse(events.job_state(job))


@require_POST
def start(request, kind: str):
    if kind not in KINDS or not KINDS[kind].on_jobs_page:
        raise Http404(f"No job kind {kind!r} to start from here")
    try:
        job = services.start_job(kind, user=request.user)
    except services.JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    messages.success(request, f"{KINDS[kind].label} job #{job.pk} queued.")
    return redirect("jobs:detail", job_id=job.pk)


@require_POST
def cancel(request, job_id: int):
    job = get_object_or_404(Job.objects.only("id", "kind", "status"), pk=job_id)
    if not request.user.has_perm("jobs.change_job"):
        raise PermissionDenied("You may not cancel jobs.")
    asked = confirm_first(
        request,
        f"Cancel {KINDS[job.kind].label.lower() if job.kind in KINDS else job.kind} job #{job.pk}? "
        "Its work so far is discarded.",
        f"Cancel job #{job.pk}",
        danger=True,
    )
    if asked:
        return asked
    try:
        services.cancel_job(job_id, user=request.user)
    except services.JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    except services.JobNotActive as exc:
        messages.info(request, f"Job #{exc.job.pk} is {exc.job.status}.")
    return redirect("jobs:detail", job_id=job_id)
