"""Pages of the edge: the fleet (devices of each loop) and a loop's intake policy."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from apps.edge import overview, services
from apps.edge.forms import IntakePolicyForm
from apps.loops.models import Loop


@permission_required("loops.view_loop", raise_exception=True)
def fleet(request):
    loops = list(Loop.objects.select_related("deployed_version"))
    day_ago = timezone.now() - timedelta(days=1)
    rows = [
        (
            loop,
            devices,
            services.intake_counts(loop, day_ago),
            overview.volumes_chart(loop.pk, devices),
        )
        for loop, devices in services.fleet(loops)
    ]
    return render(
        request,
        "edge/fleet.html",
        {"rows": rows, "silent_after_min": settings.EDGE_SILENT_AFTER_S // 60},
    )


@permission_required("loops.view_loop", raise_exception=True)
def intake_policy(request, loop_id: int):
    loop = get_object_or_404(Loop, pk=loop_id)
    policy = services.policy_for(loop)
    may_change = request.user.has_perm("loops.change_loop")
    form = IntakePolicyForm(request.POST or None, instance=policy)
    if request.method == "POST":
        if not may_change:
            messages.error(request, "Only admins may change the intake policy.")
            return redirect("edge:intake_policy", loop_id=loop.pk)
        if form.is_valid():
            form.save()
            messages.success(request, f"Intake policy of {loop} saved.")
            return redirect("edge:intake_policy", loop_id=loop.pk)
    return render(
        request,
        "edge/intake_policy.html",
        {"loop": loop, "form": form, "may_change": may_change},
    )
