import os

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.body_gate import accepts_large_body
from apps.dashboard.confirm import confirm_first
from apps.dashboard.sections import sections_for_loop_page
from apps.jobs import services as jobs
from apps.jobs.kinds import KINDS
from apps.jobs.models import ACTIVE_STATUSES, Job
from apps.loops import artifacts, overview, services
from apps.loops.forms import (
    ForceDeployForm,
    LoopForm,
    LoopSettingsForm,
    VersionImportForm,
    VersionUploadForm,
)
from apps.loops.job_links import HEAVY_JOB_FIELDS, attach_links, jobs_of_version, light_jobs
from apps.loops.models import DeploymentAction, Loop, ModelVersion, TrainedSample
from ilportal import protected_files
from ilportal.protected_files import stored_file_response

OPERATE = "loops.operate_loop"


def _active_jobs(loop: Loop) -> dict[str, Job]:
    active = Job.objects.filter(scope=loop.job_scope, status__in=ACTIVE_STATUSES).defer(
        *HEAVY_JOB_FIELDS
    )
    return {job.kind: job for job in active}


@permission_required("loops.view_loop", raise_exception=True)
def loop_list(request):
    loops = Loop.objects.select_related("dataset", "deployed_version")
    return render(request, "loops/loop_list.html", {"loops": loops})


@accepts_large_body("loops.add_loop", "REQUEST_MAX_BODY_BYTES")  # an initial model archive
@permission_required("loops.add_loop", raise_exception=True)
def loop_create(request):
    form = LoopForm(request.POST or None, request.FILES or None)
    if not form.is_bound:
        form.initial["algorithm_yaml"] = services.default_algorithm_yaml()
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                loop = services.create_loop(
                    name=data["name"],
                    dataset=data["dataset"],
                    algorithm_yaml=data["algorithm_yaml"],
                    user=request.user,
                    description=data["description"],
                    **form.gate(),
                )
                _add_initial_model(loop, data, request.user)
        except services.LoopError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Loop {loop} created.")
            return redirect("loops:detail", loop_id=loop.pk)
    return render(request, "loops/loop_form.html", {"form": form})


@permission_required("loops.change_loop", raise_exception=True)
def loop_settings(request, loop_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    form = LoopSettingsForm(request.POST or None, loop=loop)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_loop(loop, **form.settings())
        except services.LoopError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Settings saved: the next job uses them.")
            return redirect("loops:detail", loop_id=loop.pk)
    return render(request, "loops/loop_form.html", {"form": form, "loop": loop})


def _add_initial_model(loop: Loop, data: dict, user) -> None:
    if data["initial_model"] == "train":
        services.start_training(loop, user=user)
        return
    if data["initial_model"] == "upload":
        version = services.add_uploaded_version(loop, data["archive"], user=user)
    else:
        version = services.import_version_from_object_storage(
            loop, data["object_storage_uri"], user=user
        )
    if loop.auto_evaluate:
        services.start_evaluation(version, user=user)


VERSIONS_PER_PAGE = 25


def _versions(loop: Loop):
    """Versions without their heavy columns' neighbours: the train job's result, log and chart."""
    return (
        loop.versions.select_related("parent", "train_job", "created_by")
        .defer("train_job__result", "train_job__log", "train_job__chart", "train_job__params")
        .order_by("-number")
    )


@permission_required("loops.view_loop", raise_exception=True)
def loop_detail(request, loop_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset", "deployed_version"), pk=loop_id)
    page = Paginator(_versions(loop), VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = overview.version_rows(list(page.object_list))
    deployed_headline = None
    if loop.deployed_version_id:
        deployed_headline = overview.version_rows([loop.deployed_version])[0].headline
    return render(
        request,
        "loops/loop_detail.html",
        {
            "loop": loop,
            "page": page,
            "versions": page.object_list,
            "deployed_headline": deployed_headline,
            "sections": sections_for_loop_page(loop.pk),
            "active": _active_jobs(loop),
            "deployments": loop.deployments.select_related("version", "previous")[:20],
            "recent_jobs": attach_links(
                list(light_jobs(Job.objects.filter(scope=loop.job_scope))[:10])
            ),
            "chart": overview.metrics_chart(loop, list(loop.dataset.class_names)),
            "upload_form": VersionUploadForm(),
            "import_form": VersionImportForm(),
        },
    )


@permission_required("loops.view_modelversion", raise_exception=True)
def version_detail(request, loop_id: int, number: int):
    version = get_object_or_404(
        ModelVersion.objects.select_related(
            "loop__dataset", "loop__deployed_version", "parent", "created_by", "train_job"
        ).defer("train_job__result", "train_job__log", "train_job__chart"),
        loop_id=loop_id,
        number=number,
    )
    evaluations = list(version.evaluations.select_related("baseline"))
    return render(
        request,
        "loops/version_detail.html",
        {
            "version": version,
            "loop": version.loop,
            "evaluations": evaluations,
            "started_by": overview.started_by(version),
            "changes": overview.what_changed(version),
            "deployment_history": overview.deployments_of(version),
            "version_jobs": attach_links(list(jobs_of_version(version)[:20])),
            "trained_pairs": TrainedSample.objects.filter(version=version)
            .order_by("sample_id")
            .values_list("sample_id", "annotation_id")[:40],
            "compare_with": version.parent or version.loop.deployed_version,
            "active": _active_jobs(version.loop),
            "force_form": ForceDeployForm(),
            "failures": services.version_failures(version),
            "skipped_follow_up": services.skipped_follow_up(version),
        },
    )


@permission_required("loops.view_modelversion", raise_exception=True)
def compare(request, loop_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    numbers = list(loop.versions.order_by("-number").values_list("number", flat=True))

    def pick(name: str, default):
        value = request.GET.get(name, "")
        if not (value.isascii() and value.isdigit()):  # "²" is a digit that int() refuses
            return default
        return int(value) if int(value) in numbers else default

    if len(numbers) < 2:
        messages.info(request, "Comparing needs two versions.")
        return redirect("loops:detail", loop_id=loop.pk)
    b_number = pick("b", numbers[0])
    a_number = pick("a", next((n for n in numbers if n != b_number), numbers[-1]))
    versions = {
        v.number: v
        for v in loop.versions.filter(number__in=(a_number, b_number)).select_related("parent")
    }
    a, b = versions[a_number], versions[b_number]
    return render(
        request,
        "loops/version_compare.html",
        {
            "loop": loop,
            "a": a,
            "b": b,
            "numbers": numbers,
            "comparison": overview.compare_versions(a, b, list(loop.dataset.class_names)),
        },
    )


@permission_required("loops.view_modelversion", raise_exception=True)
def version_download(request, loop_id: int, number: int, what: str):
    """Serves a verified copy: the stored bytes must match the sha256 recorded at registration
    (sent as the ETag), or the download is refused with the reason."""
    version = get_object_or_404(ModelVersion, loop_id=loop_id, number=number)
    field, sha256 = {
        "archive": (version.artifact, version.artifact_sha256),
        "litert": (version.litert, version.litert_sha256),
    }.get(what, (None, ""))
    if not field:
        raise Http404("No such file for this version.")
    if sha256 and request.headers.get("If-None-Match", "").strip('"') == sha256:
        return HttpResponseNotModified(headers={"ETag": f'"{sha256}"'})
    filename = f"{version.loop.name}-{version.label}" + (".zip" if what == "archive" else ".tflite")
    if not sha256 or settings.FILE_SERVING != protected_files.DJANGO:
        # Recorded before checksums were kept, or the bytes are sent by nginx / S3, which the web
        # process never reads: the ETag still lets a client check what it got.
        response = stored_file_response(field.name, as_attachment=True, filename=filename)
        if sha256:
            response["ETag"] = f'"{sha256}"'
        return response
    try:
        path = artifacts.fetch(field.name, sha256)
    except artifacts.ArtifactError as exc:
        return HttpResponse(
            f"Refused: {exc}. The stored file is damaged or was replaced; re-upload or retrain "
            f"{version.label}.",
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    handle = open(path, "rb")  # noqa: SIM115 (FileResponse closes it)
    os.remove(path)  # the open handle keeps the bytes until the response is sent
    response = FileResponse(handle, as_attachment=True, filename=filename)
    response["ETag"] = f'"{sha256}"'
    response["Cache-Control"] = "private, no-cache"
    return response


def _act(request, loop: Loop, start):
    """Runs one button's verb; the message says what happened or why not."""
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied("Only admins train, evaluate and deploy.")
    try:
        job = start()
    except jobs.JobAlreadyActive as exc:
        messages.info(request, f"Already running: job #{exc.job.pk}.")
        return redirect("jobs:detail", job_id=exc.job.pk)
    except jobs.JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    except (services.LoopError, jobs.JobError) as exc:
        messages.error(request, str(exc))
        return redirect("loops:detail", loop_id=loop.pk)
    messages.success(request, f"Started {KINDS[job.kind].label.lower()} job #{job.pk}.")
    return redirect("jobs:detail", job_id=job.pk)


def _version(loop_id: int, number: int) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related("loop"), loop_id=loop_id, number=number
    )


@require_POST
def train(request, loop_id: int):
    loop = get_object_or_404(Loop, pk=loop_id)
    return _act(request, loop, lambda: services.start_training(loop, user=request.user))


@require_POST
def evaluate(request, loop_id: int, number: int):
    version = _version(loop_id, number)
    return _act(
        request, version.loop, lambda: services.start_evaluation(version, user=request.user)
    )


def _deploy_question(version: ModelVersion, verb: str) -> str:
    deployed = version.loop.deployed_version
    serving = f"{deployed.label} stops serving" if deployed else "nothing is deployed yet"
    return f"{verb} {version.label} of {version.loop}? Devices get {version.label}; {serving}."


def _version_with_deployed(loop_id: int, number: int) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related("loop__deployed_version"),
        loop_id=loop_id,
        number=number,
    )


@require_POST
def deploy(request, loop_id: int, number: int):
    version = _version_with_deployed(loop_id, number)
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied("Only admins train, evaluate and deploy.")
    asked = confirm_first(request, _deploy_question(version, "Deploy"), f"Deploy {version.label}")
    return asked or _act(
        request, version.loop, lambda: services.start_deploy(version, user=request.user)
    )


@require_POST
def rollback(request, loop_id: int, number: int):
    version = _version_with_deployed(loop_id, number)
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied("Only admins train, evaluate and deploy.")
    asked = confirm_first(
        request, _deploy_question(version, "Roll back to"), f"Roll back to {version.label}"
    )
    return asked or _act(
        request,
        version.loop,
        lambda: services.start_deploy(version, user=request.user, action=DeploymentAction.ROLLBACK),
    )


@require_POST
def force_deploy(request, loop_id: int, number: int):
    version = _version_with_deployed(loop_id, number)
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied("Only admins train, evaluate and deploy.")
    reason = request.POST.get("reason", "")  # checked by start_deploy
    asked = confirm_first(
        request,
        _deploy_question(version, "Force-deploy")
        + f" It did not pass its gate. Your reason is recorded: “{reason.strip()}”.",
        f"Force-deploy {version.label}",
        danger=True,
        keep=("reason",),
    )
    return asked or _act(
        request,
        version.loop,
        lambda: services.start_deploy(
            version, user=request.user, action=DeploymentAction.FORCE, reason=reason
        ),
    )


@require_POST
@permission_required("loops.delete_modelversion", raise_exception=True)
def delete_version(request, loop_id: int, number: int):
    version = _version(loop_id, number)
    asked = confirm_first(
        request,
        f"Delete {version.label} of {version.loop}? Its model files and evaluations are removed.",
        f"Delete {version.label}",
        danger=True,
    )
    if asked:
        return asked
    try:
        services.delete_version(version.pk)
    except services.LoopError as exc:
        messages.error(request, str(exc))
        return redirect("loops:version", loop_id=loop_id, number=number)
    messages.success(request, f"{version.label} deleted.")
    return redirect("loops:detail", loop_id=loop_id)


@accepts_large_body("loops.add_modelversion", "REQUEST_MAX_BODY_BYTES")
@require_POST
@permission_required("loops.add_modelversion", raise_exception=True)
def add_version(request, loop_id: int):
    loop = get_object_or_404(Loop, pk=loop_id)
    upload = VersionUploadForm(request.POST, request.FILES)
    uri = VersionImportForm(request.POST)
    try:
        if upload.is_valid():
            version = services.add_uploaded_version(
                loop, upload.cleaned_data["archive"], user=request.user
            )
        elif uri.is_valid():
            version = services.import_version_from_object_storage(
                loop, uri.cleaned_data["object_storage_uri"], user=request.user
            )
        else:
            raise services.LoopError("Choose a model archive or give an s3:// location.")
    except services.LoopError as exc:
        messages.error(request, str(exc))
        return redirect("loops:detail", loop_id=loop_id)
    messages.success(request, f"Added {version.label} as a candidate. Evaluate it to run the gate.")
    return redirect("loops:version", loop_id=loop_id, number=version.number)
