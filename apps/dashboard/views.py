from django.shortcuts import render

from apps.accounts.roles import role_of
from apps.jobs.models import Job
from apps.loops.models import Loop
from apps.ops.health import check_health


def home(request):
    can_view_jobs = request.user.has_perm("jobs.view_job")
    return render(
        request,
        "dashboard/home.html",
        {
            "role": role_of(request.user),
            "health": check_health(),
            "recent_jobs": Job.objects.all()[:10] if can_view_jobs else [],
            "loops": (
                Loop.objects.select_related("dataset", "deployed_version")
                if request.user.has_perm("loops.view_loop")
                else []
            ),
        },
    )
