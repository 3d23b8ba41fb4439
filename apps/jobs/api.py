"""REST API v1 for jobs: state, progress, result and log tail; cancel for admins.

People with `jobs.view_job` read every job; a device token reads the jobs it started (its
imports), nothing else. The pieces every loops/jobs endpoint shares (error bodies, page size,
the device read rule) live here too, since the loops API builds on jobs.
"""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api_auth import ModelPermissions, is_device
from apps.datasets.pagination import keyset_page
from apps.jobs import services
from apps.jobs.kinds import KINDS
from apps.jobs.models import Job, JobStatus

MAX_API_PAGE = 500
DEFAULT_LOG_LINES = 50
MAX_LOG_LINES = 2000
# Job params worth showing; the rest (staged upload keys...) is the worker's business.
PUBLIC_PARAMS = ("loop_id", "version_id", "dataset_id", "action", "reason", "retry_of", "format")


# --- Shared by the loops and jobs APIs ---------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words meant for the user.")


class InvalidRequest(APIException):
    """400 with one `detail` sentence (DRF's own validation errors are a dict per field)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"


def error_responses(*codes: int) -> dict:
    return {code: ErrorSerializer for code in codes}


def validated(serializer: serializers.Serializer) -> dict:
    """The serializer's data, or InvalidRequest naming every field that is wrong."""
    if serializer.is_valid():
        return serializer.validated_data
    raise InvalidRequest("; ".join(_flatten(serializer.errors)))


def _flatten(errors, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        return [
            line
            for field, inner in errors.items()
            for line in _flatten(
                inner, prefix if field == "non_field_errors" else f"{prefix}{field}: "
            )
        ]
    if isinstance(errors, list):
        return [line for inner in errors for line in _flatten(inner, prefix)]
    return [f"{prefix}{errors}"]


def page_size(request) -> int:
    raw = request.query_params.get("limit", settings.DATASET_PAGE_SIZE)
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequest("limit must be an integer.") from None
    if not 1 <= limit <= MAX_API_PAGE:
        raise InvalidRequest(f"limit must be from 1 to {MAX_API_PAGE}.")
    return limit


# Ids, cursors and counts in query strings: never negative, and within the database's bigint.
WHOLE_NUMBER = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def whole_number_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, WHOLE_NUMBER, description=description)


def int_param(request, name: str) -> int | None:
    # An empty value is not a number: `?after=` is a 400, as in the datasets API and the schema.
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, not {raw!r}.") from None
    if not WHOLE_NUMBER["minimum"] <= value <= WHOLE_NUMBER["maximum"]:
        raise InvalidRequest(f"{name} must be a whole number from 0 to 2**63-1, not {raw!r}.")
    return value


def choice_parameter(name: str, choices, description: str = "") -> OpenApiParameter:
    """A filter of fixed values; an empty one means "any" (as a form's blank choice sends it),
    and the schema says so, or a client generated from it would refuse to send it."""
    return OpenApiParameter(
        name, enum=[*sorted(choices), ""], description=f"{description} (empty: any)".lstrip()
    )


def choice_param(request, name: str, choices) -> str | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(sorted(choices))}, not {raw!r}.")
    return raw


PAGE_PARAMETERS = [
    whole_number_parameter("after", "Keyset cursor: `next_after` of the last page"),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_API_PAGE},
        description=f"Page size, 1 to {MAX_API_PAGE}",
    ),
]


def page_serializer(name: str, item: serializers.Serializer):
    """The schema of a keyset page: results, newest first, and the cursor of the next one."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "results": item,
            "next_after": serializers.IntegerField(
                allow_null=True, help_text="Pass as ?after= for the next page; null on the last."
            ),
        },
    )


class DeviceReadPermission(ModelPermissions):
    """Roles as everywhere; a device token may also GET views marked `device_readable`.

    Those views narrow what a device sees themselves (its loop scope, its own jobs).
    """

    def has_permission(self, request, view) -> bool:
        if (
            is_device(request.user)
            and request.method in ("GET", "HEAD")
            and getattr(view, "device_readable", False)
        ):
            return True
        return super().has_permission(request, view)


class DeviceReadableApiView(APIView):
    permission_classes = [DeviceReadPermission]


# --- Jobs --------------------------------------------------------------------------------------


class JobSerializer(serializers.ModelSerializer):
    loop = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    device = serializers.SerializerMethodField()
    result = serializers.DictField(read_only=True)
    chart = serializers.ListField(child=serializers.DictField(), read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    url = serializers.SerializerMethodField()
    api_url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "trigger",
            "scope",
            "loop",
            "params",
            "progress",
            "message",
            "result",
            "chart",
            "is_active",
            "cancel_requested",
            "started_by",
            "created_by",
            "device",
            "worker",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "url",
            "api_url",
        ]
        read_only_fields = fields

    def get_loop(self, job) -> int | None:
        return job.params.get("loop_id")

    @extend_schema_field(serializers.DictField())
    def get_params(self, job) -> dict:
        return {key: job.params[key] for key in PUBLIC_PARAMS if key in job.params}

    @extend_schema_field(
        serializers.CharField(allow_null=True, help_text="The device token that started it")
    )
    def get_device(self, job) -> str | None:
        return job.device.name if job.device_id else None

    def get_url(self, job) -> str:
        return reverse("jobs:detail", args=[job.pk])

    def get_api_url(self, job) -> str:
        return reverse("api-job", args=[job.pk])


class JobDetailSerializer(JobSerializer):
    log_tail = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log_tail"]

    def get_log_tail(self, job) -> list[str]:
        lines = self.context.get("log_lines", DEFAULT_LOG_LINES)
        return job.log.splitlines()[-lines:] if lines else []


class JobConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    job = JobSerializer(
        allow_null=True, help_text="The job in the way (null if it finished meanwhile)"
    )


def conflict(message: str, job: Job) -> Response:
    """409 naming the job in the way (id, kind, status, links)."""
    return Response(
        {"detail": message, "job": JobSerializer(job).data}, status=status.HTTP_409_CONFLICT
    )


def job_queryset():
    return Job.objects.select_related("created_by", "device")


def job_or_404(job_id: int, queryset=None) -> Job:
    job = (Job.objects if queryset is None else queryset).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No job #{job_id}.")
    return job


def readable_job(request, job_id: int) -> Job:
    """The job, if this caller may read it: people by role, a device only the jobs it started."""
    job = job_or_404(job_id, job_queryset())
    if is_device(request.user) and job.device_id != request.user.token.pk:
        raise PermissionDenied("This device token did not start this job.")
    return job


class JobListView(DeviceReadableApiView):
    required_permissions = {"GET": "jobs.view_job"}
    device_readable = True

    @extend_schema(
        operation_id="jobs_list",
        parameters=[
            choice_parameter("kind", KINDS),
            choice_parameter("status", JobStatus.values),
            whole_number_parameter("loop", "Jobs of this loop"),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: page_serializer("JobPage", JobSerializer(many=True)),
            **error_responses(400, 401, 403),
        },
        description="Jobs, newest first. A device token sees the jobs it started.",
    )
    def get(self, request):
        jobs = job_queryset().defer("log")
        kind = choice_param(request, "kind", KINDS)
        job_status = choice_param(request, "status", JobStatus.values)
        loop_id = int_param(request, "loop")
        if kind:
            jobs = jobs.filter(kind=kind)
        if job_status:
            jobs = jobs.filter(status=job_status)
        if loop_id is not None:
            jobs = jobs.filter(scope=f"loop:{loop_id}")
        if is_device(request.user):
            jobs = jobs.filter(device=request.user.token)
        page = keyset_page(jobs, after=int_param(request, "after"), size=page_size(request))
        return Response(
            {"results": JobSerializer(page.items, many=True).data, "next_after": page.next_after}
        )


class JobDetailView(DeviceReadableApiView):
    required_permissions = {"GET": "jobs.view_job"}
    device_readable = True

    @extend_schema(
        parameters=[
            whole_number_parameter(
                "log_lines",
                f"Lines of the log's tail (default {DEFAULT_LOG_LINES}, at most {MAX_LOG_LINES})",
            )
        ],
        responses={200: JobDetailSerializer, **error_responses(400, 401, 403, 404)},
        description="State, progress, result and the tail of the log of one job.",
    )
    def get(self, request, job_id: int):
        asked = int_param(request, "log_lines")
        log_lines = DEFAULT_LOG_LINES if asked is None else max(0, min(asked, MAX_LOG_LINES))
        job = readable_job(request, job_id)
        return Response(JobDetailSerializer(job, context={"log_lines": log_lines}).data)


class JobCancelView(DeviceReadableApiView):
    required_permissions = {"POST": "jobs.change_job"}

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: JobConflictSerializer,
            **error_responses(401, 403, 404),
        },
        description="Cancels a queued job at once, or asks a running one to stop at its next "
        "report (`cancel_requested`). A job that already finished answers 409.",
    )
    def post(self, request, job_id: int):
        job = job_or_404(job_id)
        try:
            job = services.cancel_job(job.pk, user=request.user)
        except services.JobPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except services.JobNotActive as exc:
            return conflict(str(exc), exc.job)
        return Response(JobSerializer(job_queryset().get(pk=job.pk)).data)
