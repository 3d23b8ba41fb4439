from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.jobs import events, services
from apps.jobs.kinds import KINDS
from apps.jobs.models import Job


@permission_required("jobs.view_job", raise_exception=True)
def job_list(request):
    page = Paginator(Job.objects.select_related("created_by"), 25).get_page(request.GET.get("page"))
    startable = [kind for kind in KINDS.values() if kind.on_jobs_page]
    return render(request, "jobs/job_list.html", {"page": page, "kinds": startable})


@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    return render(request, "jobs/job_detail.html", {"job": job, "state": events.job_state(job)})


@permission_required("jobs.view_job", raise_exception=True)
def job_state(request, job_id: int):
    """The page re-reads this whenever its WebSocket (re)connects, so nothing sent is lost."""
    job = get_object_or_404(Job, pk=job_id)
    return JsonResponse({**events.job_state(job), "log": job.log})


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
    get_object_or_404(Job, pk=job_id)
    try:
        job = services.cancel_job(job_id, user=request.user)
    except services.JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    if not job.is_active:
        messages.info(request, f"Job #{job.pk} is {job.status}.")
    return redirect("jobs:detail", job_id=job_id)
