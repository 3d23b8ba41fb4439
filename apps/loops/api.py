"""REST API v1 for loops, model versions, evaluations and deployments (see /api/v1/schema/).

Reads are for every role with the view permission, and for device tokens on the loops in their
scope. The verbs (train, evaluate, deploy, rollback, force) are the buttons' verbs: the same
services with the same checks and messages; a verb starts a job and answers 202 with it, or 409
naming the job of that kind already running for the loop.
"""

from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.api_auth import is_device
from apps.datasets.models import Dataset
from apps.datasets.pagination import keyset_page
from apps.jobs import services as jobs
from apps.jobs.api import (
    PAGE_PARAMETERS,
    DeviceReadableApiView,
    InvalidRequest,
    JobConflictSerializer,
    JobSerializer,
    choice_param,
    choice_parameter,
    conflict,
    error_responses,
    int_param,
    page_serializer,
    page_size,
    validated,
    whole_number_parameter,
)
from apps.jobs.models import ACTIVE_STATUSES, Job, JobTrigger
from apps.loops import services
from apps.loops.models import (
    Deployment,
    DeploymentAction,
    Evaluation,
    EvaluationSet,
    Loop,
    ModelVersion,
    Stage,
    TrainedSample,
    VersionSource,
)
from ilportal.api_parsers import JSONBodyParser

# Jobs started here say so (the pages' buttons start `manual` ones).
API = JobTrigger.API

# What the settings form starts a new loop with (apps/loops/forms.py initial values).
DEFAULT_GATE = {
    "gate_min_metrics": {"f1": 0.5},
    "gate_min_gain": {"f1": 0.01},
    "gate_per_class_gain": False,
    "gate_max_forgetting": 0.02,
    "gate_min_edge_images": 1,
}


# --- Serializers ---------------------------------------------------------------------------


class VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    label = serializers.CharField()


class JobRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()


class LoopSerializer(serializers.ModelSerializer):
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    class_names = serializers.ListField(
        source="dataset.class_names", child=serializers.CharField(), read_only=True
    )
    deployed_version = serializers.SerializerMethodField()
    gate_min_metrics = serializers.DictField(child=serializers.FloatField())
    gate_min_gain = serializers.DictField(child=serializers.FloatField())
    gate_max_forgetting = serializers.FloatField(allow_null=True)
    version_count = serializers.IntegerField(read_only=True)
    active_jobs = serializers.SerializerMethodField()
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Loop
        fields = [
            "id",
            "name",
            "description",
            "dataset",
            "dataset_name",
            "class_names",
            "algorithm_yaml",
            "deployed_version",
            "version_count",
            "gate_min_metrics",
            "gate_min_gain",
            "gate_per_class_gain",
            "gate_max_forgetting",
            "gate_min_edge_images",
            "auto_evaluate",
            "auto_deploy",
            "retry_lost_jobs",
            "active_jobs",
            "created_by",
            "created_at",
            "url",
        ]
        read_only_fields = fields

    @extend_schema_field(VersionRefSerializer(allow_null=True))
    def get_deployed_version(self, loop) -> dict | None:
        version = loop.deployed_version
        if version is None:
            return None
        return {"id": version.pk, "number": version.number, "label": version.label}

    @extend_schema_field(JobRefSerializer(many=True))
    def get_active_jobs(self, loop) -> list[dict]:
        active = self.context.get("active_jobs", {}).get(loop.job_scope, [])
        return [
            {"id": job.pk, "kind": job.kind, "status": job.status, "progress": job.progress}
            for job in active
        ]

    def get_url(self, loop) -> str:
        return reverse("loops:detail", args=[loop.pk])


class GateSettingsSerializer(serializers.Serializer):
    """The gate and automation settings, checked as the settings form checks them."""

    description = serializers.CharField(required=False, allow_blank=True)
    algorithm_yaml = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Base model and miner with hyperparameters. Empty: the default FPN + IBT.",
    )
    gate_min_metrics = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1),
        required=False,
        help_text='Minimum values on the edge set, e.g. {"f1": 0.6}.',
    )
    gate_min_gain = serializers.DictField(
        child=serializers.FloatField(min_value=-1, max_value=1),
        required=False,
        help_text='Minimum gain over the deployed version, e.g. {"f1": 0.01}.',
    )
    gate_per_class_gain = serializers.BooleanField(required=False)
    gate_max_forgetting = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="Largest allowed mAP drop on the regression set; null: not checked.",
    )
    gate_min_edge_images = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1_000_000,
        help_text="Fewest labeled edge evaluation images the gate judges on; with fewer, its "
        "bounds and gains use the regression set.",
    )
    auto_evaluate = serializers.BooleanField(required=False)
    auto_deploy = serializers.BooleanField(required=False)
    retry_lost_jobs = serializers.BooleanField(required=False)


class LoopCreateSerializer(GateSettingsSerializer):
    name = serializers.CharField(max_length=120)
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())


class GateCheckSerializer(serializers.Serializer):
    passed = serializers.BooleanField()
    text = serializers.CharField()


class EvaluationSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version_number", read_only=True)
    version_id = serializers.IntegerField(read_only=True)
    baseline = serializers.IntegerField(source="baseline_number", read_only=True, allow_null=True)
    metrics = serializers.DictField()
    baseline_metrics = serializers.DictField(allow_null=True)
    map_change = serializers.FloatField(allow_null=True, read_only=True)
    f1_change = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "version",
            "version_id",
            "evaluation_set",
            "image_count",
            "data_sha256",
            "metrics",
            "baseline",
            "baseline_metrics",
            "map_change",
            "f1_change",
            "job",
            "created_at",
        ]
        read_only_fields = fields


class LineageSerializer(serializers.Serializer):
    parent = serializers.IntegerField(allow_null=True, help_text="Number of the parent version")
    train_job = serializers.IntegerField(allow_null=True)
    trained_samples = serializers.IntegerField(help_text="Samples in its training snapshot")
    new_samples = serializers.IntegerField(
        allow_null=True, help_text="Not in the parent's snapshot; null unless trained here"
    )
    replay_samples = serializers.IntegerField(
        allow_null=True, help_text="Replayed from the parent's snapshot; null unless trained here"
    )
    snapshot_sha256 = serializers.CharField()


class VersionSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    created_by = serializers.CharField(source="created_by_name", allow_null=True, read_only=True)
    gate_reasons = GateCheckSerializer(many=True, read_only=True)
    gate_failures = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    evaluations = serializers.SerializerMethodField()
    lineage = serializers.SerializerMethodField()
    hyperparameters = serializers.DictField(read_only=True)
    train_summary = serializers.DictField(read_only=True)
    class_names = serializers.ListField(child=serializers.CharField(), read_only=True)
    url = serializers.SerializerMethodField()
    archive_url = serializers.SerializerMethodField()
    litert_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "loop",
            "number",
            "label",
            "source",
            "stage",
            "gate_passed",
            "gate_reasons",
            "gate_failures",
            "metrics",
            "evaluations",
            "lineage",
            "class_names",
            "hyperparameters",
            "train_summary",
            "artifact_sha256",
            "artifact_size",
            "litert_sha256",
            "source_uri",
            "created_by",
            "created_at",
            "url",
            "archive_url",
            "litert_url",
        ]
        read_only_fields = fields

    def get_gate_failures(self, version) -> list[str]:
        return services.version_failures(version)

    def _latest(self, version) -> list[Evaluation]:
        latest: dict[str, Evaluation] = {}
        for evaluation in version.evaluations.all():  # prefetched, newest first
            latest.setdefault(evaluation.evaluation_set, evaluation)
        return [latest[name] for name in EvaluationSet.values if name in latest]

    @extend_schema_field(
        serializers.DictField(
            child=serializers.DictField(),
            help_text="Latest metrics per evaluation set (edge, regression)",
        )
    )
    def get_metrics(self, version) -> dict:
        return {e.evaluation_set: e.metrics for e in self._latest(version)}

    @extend_schema_field(EvaluationSerializer(many=True))
    def get_evaluations(self, version) -> list[dict]:
        return EvaluationSerializer(self._latest(version), many=True).data

    @extend_schema_field(LineageSerializer)
    def get_lineage(self, version) -> dict:
        trained_here = version.source == VersionSource.TRAINED
        return {
            "parent": version.parent_number,
            "train_job": version.train_job_id,
            "trained_samples": version.trained_sample_count,
            "new_samples": version.new_samples if trained_here else None,
            "replay_samples": version.replay_samples if trained_here else None,
            "snapshot_sha256": version.snapshot_sha256,
        }

    def get_url(self, version) -> str:
        return reverse("loops:version", args=[version.loop_id, version.number])

    def get_archive_url(self, version) -> str:
        return reverse("loops:download", args=[version.loop_id, version.number, "archive"])

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_litert_url(self, version) -> str | None:
        if not version.litert:
            return None
        return reverse("loops:download", args=[version.loop_id, version.number, "litert"])


class DeploymentSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version_number", read_only=True)
    version_id = serializers.IntegerField(read_only=True)
    previous = serializers.IntegerField(source="previous_number", read_only=True, allow_null=True)
    previous_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "action",
            "version",
            "version_id",
            "previous",
            "previous_id",
            "started_by",
            "reason",
            "job",
            "created_at",
        ]
        read_only_fields = fields


class DeployRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, help_text="Why; required for a forced deploy."
    )


# --- Querysets -----------------------------------------------------------------------------


def loop_queryset():
    return Loop.objects.select_related("dataset", "deployed_version", "created_by").annotate(
        version_count=Count("versions")
    )


def evaluation_queryset():
    return Evaluation.objects.annotate(
        version_number=F("version__number"), baseline_number=F("baseline__number")
    )


def version_queryset(loop_id: int):
    trained = (
        TrainedSample.objects.filter(version=OuterRef("pk"))
        .order_by()
        .values("version")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        ModelVersion.objects.filter(loop_id=loop_id)
        .defer("algorithm_yaml")
        .annotate(
            parent_number=F("parent__number"),
            created_by_name=F("created_by__username"),
            trained_sample_count=Coalesce(Subquery(trained, output_field=IntegerField()), 0),
        )
        .prefetch_related(Prefetch("evaluations", queryset=evaluation_queryset()))
    )


def deployment_queryset(loop_id: int):
    return Deployment.objects.filter(loop_id=loop_id).annotate(
        version_number=F("version__number"), previous_number=F("previous__number")
    )


def _active_jobs_by_scope(loops: list[Loop]) -> dict[str, list[Job]]:
    scopes = [loop.job_scope for loop in loops]
    grouped: dict[str, list[Job]] = {}
    for job in Job.objects.filter(scope__in=scopes, status__in=ACTIVE_STATUSES).defer("log"):
        grouped.setdefault(job.scope, []).append(job)
    return grouped


def _loop_body(loop_id: int) -> dict:
    loop = loop_queryset().get(pk=loop_id)
    return LoopSerializer(loop, context={"active_jobs": _active_jobs_by_scope([loop])}).data


# --- Access --------------------------------------------------------------------------------


def loop_or_404(loop_id: int, queryset=None) -> Loop:
    loop = (Loop.objects if queryset is None else queryset).filter(pk=loop_id).first()
    if loop is None:
        raise NotFound(f"No loop #{loop_id}.")
    return loop


def version_or_404(loop: Loop, number: int, queryset=None) -> ModelVersion:
    versions = ModelVersion.objects.filter(loop=loop) if queryset is None else queryset
    version = versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"Loop {loop.name!r} has no version v{number}.")
    version.loop = loop
    return version


def readable_loop(request, loop_id: int) -> Loop:
    """The loop, if this caller may see it: people by role, a device only within its scope."""
    loop = loop_or_404(loop_id)
    if is_device(request.user) and not request.user.token.may_use_loop(loop.pk):
        raise PermissionDenied(f"This device token is not scoped to loop {loop.name!r}.")
    return loop


def _start(start) -> Response:
    """Runs one verb like the page's button does; the answer says what happened or why not."""
    try:
        job = start()
    except jobs.JobAlreadyActive as exc:
        return conflict(str(exc), exc.job)
    except jobs.JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    except services.LoopError as exc:
        raise InvalidRequest(str(exc)) from exc
    except jobs.JobError as exc:  # another job of the kind finished in between: try again
        return Response({"detail": str(exc), "job": None}, status=status.HTTP_409_CONFLICT)
    job = Job.objects.select_related("created_by", "device").get(pk=job.pk)
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


STARTED = {
    202: JobSerializer,
    409: JobConflictSerializer,
    **error_responses(400, 401, 403, 404),
}


# --- Loops ---------------------------------------------------------------------------------


class LoopListView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_loop", "POST": "loops.add_loop"}
    device_readable = True
    parser_classes = [JSONBodyParser]

    @extend_schema(
        operation_id="loops_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: page_serializer("LoopPage", LoopSerializer(many=True)),
            **error_responses(400, 401, 403),
        },
        description="Loops, newest first. A device token sees the loops in its scope.",
    )
    def get(self, request):
        loops = loop_queryset()
        if is_device(request.user) and not request.user.token.all_loops:
            loops = loops.filter(device_tokens=request.user.token)
        page = keyset_page(loops, after=int_param(request, "after"), size=page_size(request))
        context = {"active_jobs": _active_jobs_by_scope(page.items)}
        return Response(
            {
                "results": LoopSerializer(page.items, many=True, context=context).data,
                "next_after": page.next_after,
            }
        )

    @extend_schema(
        request=LoopCreateSerializer,
        responses={201: LoopSerializer, **error_responses(400, 401, 403)},
        description="Creates a loop; nothing is trained until you call its train action. "
        "Omitted gate settings take the settings form's defaults: F1 ≥ 0.5, F1 gain ≥ 0.01, "
        "mAP drop on the regression set ≤ 0.02, evaluate and deploy automatically.",
    )
    def post(self, request):
        data = dict(validated(LoopCreateSerializer(data=request.data)))
        options = {
            **DEFAULT_GATE,
            "auto_evaluate": True,
            "auto_deploy": True,
            "description": "",
            "algorithm_yaml": "",
            **data,
        }
        try:
            with transaction.atomic():
                loop = services.create_loop(user=request.user, **options)
        except services.LoopError as exc:
            raise InvalidRequest(str(exc)) from exc
        return Response(_loop_body(loop.pk), status=status.HTTP_201_CREATED)


class LoopDetailView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_loop", "PATCH": "loops.change_loop"}
    device_readable = True
    parser_classes = [JSONBodyParser]

    @extend_schema(responses={200: LoopSerializer, **error_responses(401, 403, 404)})
    def get(self, request, loop_id: int):
        return Response(_loop_body(readable_loop(request, loop_id).pk))

    @extend_schema(
        request=GateSettingsSerializer,
        responses={200: LoopSerializer, **error_responses(400, 401, 403, 404)},
        description="Changes the settings given (the algorithm YAML, the gate, automation); "
        "the next job uses them. A loop's name and dataset stay as created.",
    )
    def patch(self, request, loop_id: int):
        loop = loop_or_404(loop_id, Loop.objects.select_related("dataset"))
        given = set(request.data) if isinstance(request.data, dict) else set()
        fixed = sorted({"name", "dataset"} & given)
        if fixed:
            raise InvalidRequest(f"A loop's {' and '.join(fixed)} cannot change after creation.")
        data = dict(validated(GateSettingsSerializer(data=request.data)))
        algorithm_yaml = data.pop("algorithm_yaml", loop.algorithm_yaml)
        try:
            with transaction.atomic():
                services.update_loop(loop, algorithm_yaml=algorithm_yaml, **data)
        except services.LoopError as exc:
            raise InvalidRequest(str(exc)) from exc
        return Response(_loop_body(loop.pk))


class LoopTrainView(DeviceReadableApiView):
    required_permissions = {"POST": "loops.operate_loop"}

    @extend_schema(
        request=None,
        responses=STARTED,
        description="Starts a training of the loop on its dataset's labeled samples (like "
        "'Train now'). 409 names the training already queued or running.",
    )
    def post(self, request, loop_id: int):
        loop = loop_or_404(loop_id)
        return _start(lambda: services.start_training(loop, user=request.user, trigger=API))


# --- Versions ------------------------------------------------------------------------------


class VersionListView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_modelversion"}
    device_readable = True

    @extend_schema(
        operation_id="loops_versions_list",
        parameters=[
            choice_parameter("stage", Stage.values),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: page_serializer("VersionPage", VersionSerializer(many=True)),
            **error_responses(400, 401, 403, 404),
        },
        description="Versions of the loop, newest first, with their latest metrics per "
        "evaluation set, gate verdict and lineage.",
    )
    def get(self, request, loop_id: int):
        loop = readable_loop(request, loop_id)
        versions = version_queryset(loop.pk)
        stage = choice_param(request, "stage", Stage.values)
        if stage:
            versions = versions.filter(stage=stage)
        page = keyset_page(versions, after=int_param(request, "after"), size=page_size(request))
        return Response(
            {
                "results": VersionSerializer(page.items, many=True).data,
                "next_after": page.next_after,
            }
        )


class VersionDetailView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_modelversion"}
    device_readable = True

    @extend_schema(responses={200: VersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, loop_id: int, number: int):
        loop = readable_loop(request, loop_id)
        version = version_or_404(loop, number, version_queryset(loop.pk))
        return Response(VersionSerializer(version).data)


class VersionEvaluateView(DeviceReadableApiView):
    required_permissions = {"POST": "loops.operate_loop"}

    @extend_schema(
        request=None,
        responses=STARTED,
        description="Evaluates the version against the deployed one and runs the gate.",
    )
    def post(self, request, loop_id: int, number: int):
        version = version_or_404(loop_or_404(loop_id), number)
        return _start(lambda: services.start_evaluation(version, user=request.user, trigger=API))


class _DeployActionView(DeviceReadableApiView):
    required_permissions = {"POST": "loops.operate_loop"}
    parser_classes = [JSONBodyParser, FormParser, MultiPartParser]
    action: str = DeploymentAction.DEPLOY

    def post(self, request, loop_id: int, number: int):
        version = version_or_404(loop_or_404(loop_id), number)
        reason = validated(DeployRequestSerializer(data=request.data)).get("reason", "")
        return _start(
            lambda: services.start_deploy(
                version, user=request.user, action=self.action, reason=reason, trigger=API
            )
        )


class VersionDeployView(_DeployActionView):
    action = DeploymentAction.DEPLOY

    @extend_schema(
        request=DeployRequestSerializer,
        responses=STARTED,
        description="Deploys a version that passed its gate (smoke test first, in the job). "
        "A version that has not passed answers 400 with the gate's reasons.",
    )
    def post(self, request, loop_id: int, number: int):
        return super().post(request, loop_id, number)


class VersionRollbackView(_DeployActionView):
    action = DeploymentAction.ROLLBACK

    @extend_schema(
        request=DeployRequestSerializer,
        responses=STARTED,
        description="Moves the deployed pointer back to a version that was deployed before; "
        "a version never deployed answers 400.",
    )
    def post(self, request, loop_id: int, number: int):
        return super().post(request, loop_id, number)


class VersionForceView(_DeployActionView):
    action = DeploymentAction.FORCE

    @extend_schema(
        request=DeployRequestSerializer,
        responses=STARTED,
        description="Deploys a version whatever its gate said; needs a written `reason` "
        "(400 without) and the force_deploy permission (admins).",
    )
    def post(self, request, loop_id: int, number: int):
        return super().post(request, loop_id, number)


# --- Evaluations and deployments -----------------------------------------------------------


class EvaluationListView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_evaluation"}
    device_readable = True

    @extend_schema(
        operation_id="loops_evaluations_list",
        parameters=[
            whole_number_parameter("version", "Evaluations of this version number"),
            choice_parameter("set", EvaluationSet.values),
            *PAGE_PARAMETERS,
        ],
        responses={
            200: page_serializer("EvaluationPage", EvaluationSerializer(many=True)),
            **error_responses(400, 401, 403, 404),
        },
        description="Evaluations of the loop's versions, newest first, with the deployed "
        "baseline's metrics on the same data.",
    )
    def get(self, request, loop_id: int):
        loop = readable_loop(request, loop_id)
        evaluations = evaluation_queryset().filter(version__loop=loop)
        number = int_param(request, "version")
        evaluation_set = choice_param(request, "set", EvaluationSet.values)
        if number is not None:
            evaluations = evaluations.filter(version__number=number)
        if evaluation_set:
            evaluations = evaluations.filter(evaluation_set=evaluation_set)
        page = keyset_page(evaluations, after=int_param(request, "after"), size=page_size(request))
        return Response(
            {
                "results": EvaluationSerializer(page.items, many=True).data,
                "next_after": page.next_after,
            }
        )


class DeploymentListView(DeviceReadableApiView):
    required_permissions = {"GET": "loops.view_deployment"}
    device_readable = True

    @extend_schema(
        operation_id="loops_deployments_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: page_serializer("DeploymentPage", DeploymentSerializer(many=True)),
            **error_responses(400, 401, 403, 404),
        },
        description="Moves of the loop's deployed pointer (deploy, rollback, forced), newest "
        "first: who or what, from which version, why.",
    )
    def get(self, request, loop_id: int):
        loop = readable_loop(request, loop_id)
        page = keyset_page(
            deployment_queryset(loop.pk),
            after=int_param(request, "after"),
            size=page_size(request),
        )
        return Response(
            {
                "results": DeploymentSerializer(page.items, many=True).data,
                "next_after": page.next_after,
            }
        )
