"""REST API v1 for datasets, samples and annotations (documented at /api/v1/schema/).

Views parse, check the permission named in `required_permissions`, call one service, answer.
"""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import renderers, serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api_auth import check_device_may_use_dataset, is_device
from apps.accounts.body_gate import LargeBody
from apps.datasets import services
from apps.datasets.boxes import BoxRejected
from apps.datasets.exporting import EXPORT_FORMAT_LABELS, ExportError, start_export
from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageRejected
from apps.datasets.importing import (
    FORMAT_CHOICES,
    LISTED_WITHOUT_LABELS_CHOICES,
    LISTED_WITHOUT_LABELS_UNLABELED,
    UNKNOWN_CLASSES_ADD,
    UNKNOWN_CLASSES_REJECT,
)
from apps.datasets.models import Annotation, Dataset, Sample, SampleSource, SampleStatus, Split
from apps.datasets.pagination import keyset_page
from apps.datasets.views import export_file_response, import_report_response
from apps.jobs import events
from apps.jobs.models import Job
from apps.jobs.services import JobError, JobPermissionDenied
from apps.labeling.models import SkipReason
from ilportal.api_parsers import JSONBodyParser
from ilportal.api_schema import ApiErrorSerializer

MAX_API_PAGE = 500


# --- Serializers ---------------------------------------------------------------------------


class BoxSerializer(serializers.Serializer):
    class_name = serializers.CharField(max_length=100)
    x1 = serializers.FloatField()
    y1 = serializers.FloatField()
    x2 = serializers.FloatField()
    y2 = serializers.FloatField()

    def to_labeled_box(self, data) -> LabeledBox:
        return LabeledBox(data["class_name"], data["x1"], data["y1"], data["x2"], data["y2"])


class DatasetSerializer(serializers.ModelSerializer):
    class_names = serializers.ListField(
        child=serializers.CharField(max_length=100),
        help_text="The dataset's classes, in order (may be empty: add them later).",
    )
    sample_count = serializers.IntegerField(read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "class_names",
            "description",
            "train_percent",
            "eval_percent",
            "sample_count",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "sample_count", "created_by", "created_at"]


class DatasetChangeSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    add_classes = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text="Class names to append (existing classes are never renamed or removed).",
    )


class AnnotationSerializer(serializers.ModelSerializer):
    boxes = BoxSerializer(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Annotation
        fields = ["id", "sample", "revision", "source", "created_by", "created_at", "boxes"]


class SampleSerializer(serializers.ModelSerializer):
    boxes = serializers.SerializerMethodField()
    revision = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = [
            "id",
            "dataset",
            "sha256",
            "width",
            "height",
            "original_name",
            "source",
            "captured_at",
            "split",
            "status",
            "current_annotation",
            "revision",
            "boxes",
            "hardness_score",
            "image_url",
            "thumbnail_url",
            "created_at",
        ]

    def _current_boxes(self, sample) -> list:
        by_annotation = self.context.get("boxes_by_annotation")
        if by_annotation is None:
            by_annotation = services.boxes_by_annotation([sample.current_annotation_id])
        return by_annotation.get(sample.current_annotation_id, [])

    def get_boxes(self, sample) -> list[dict]:
        return [box.as_dict() for box in self._current_boxes(sample)]

    def get_revision(self, sample) -> int | None:
        revisions = self.context.get("revisions") or {}
        if sample.current_annotation_id is None:
            return None
        if sample.current_annotation_id in revisions:
            return revisions[sample.current_annotation_id]
        return sample.current_annotation.revision

    def get_image_url(self, sample) -> str:
        return reverse("datasets:image", args=[sample.pk])

    def get_thumbnail_url(self, sample) -> str:
        return reverse("datasets:thumbnail", args=[sample.pk])


class SampleUploadSerializer(serializers.Serializer):
    image = serializers.FileField()
    boxes = serializers.CharField(
        required=False, help_text='JSON list of boxes: [{"class_name", "x1", "y1", "x2", "y2"}].'
    )
    split = serializers.ChoiceField(choices=Split.choices, required=False, allow_blank=True)
    captured_at = serializers.DateTimeField(required=False)

    def validate_boxes(self, raw):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValidationError(f"not valid JSON: {exc}") from exc
        boxes = BoxSerializer(data=data, many=True)
        boxes.is_valid(raise_exception=True)
        return [BoxSerializer().to_labeled_box(box) for box in boxes.validated_data]


class SampleStatusChangeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SampleStatus.choices)
    reason = serializers.ChoiceField(
        choices=SkipReason.choices,
        required=False,
        help_text='why a sample is skipped (recorded as the editor\'s skip is); default "other"',
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


# Built with type() because one query parameter is named `class`. An empty value means "any".
SampleQuerySerializer = type(
    "SampleQuerySerializer",
    (serializers.Serializer,),
    {
        "status": serializers.ChoiceField(
            choices=SampleStatus.choices, required=False, allow_blank=True
        ),
        "split": serializers.ChoiceField(choices=Split.choices, required=False, allow_blank=True),
        "source": serializers.ChoiceField(
            choices=SampleSource.choices, required=False, allow_blank=True
        ),
        "class": serializers.CharField(
            max_length=100,
            required=False,
            allow_blank=True,
            help_text="Samples with a box of this class",
        ),
        "after": serializers.IntegerField(
            min_value=0, max_value=2**63 - 1, required=False, help_text="next_after of a page"
        ),
        "limit": serializers.IntegerField(
            min_value=1, max_value=MAX_API_PAGE, required=False, help_text="Page size"
        ),
    },
)


class AnnotationCreateSerializer(serializers.Serializer):
    boxes = BoxSerializer(many=True, help_text="[] means: this image has no objects.")
    base_revision = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="The revision these boxes were edited from (0: none). When it is no longer "
        "the newest, the save is refused with 409. Leave it out to skip the check.",
    )


class ImportSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="An empty file is reported by name in the import's report, not refused here.",
    )
    format = serializers.ChoiceField(choices=FORMAT_CHOICES, default="auto")
    unknown_classes = serializers.ChoiceField(
        choices=[UNKNOWN_CLASSES_REJECT, UNKNOWN_CLASSES_ADD], default=UNKNOWN_CLASSES_REJECT
    )
    listed_without_labels = serializers.ChoiceField(
        choices=LISTED_WITHOUT_LABELS_CHOICES,
        default=LISTED_WITHOUT_LABELS_UNLABELED,
        help_text="VOC images listed in ImageSets/Main/*.txt with no XML: stored unlabeled, "
        "or as labeled with no objects (Datumaro and CVAT write no XML for them).",
    )


def _sample_context(samples: list[Sample]) -> dict:
    """Boxes and revision numbers of a page of samples in two queries."""
    ids = [s.current_annotation_id for s in samples if s.current_annotation_id]
    revisions = dict(Annotation.objects.filter(pk__in=ids).values_list("id", "revision"))
    return {"boxes_by_annotation": services.boxes_by_annotation(ids), "revisions": revisions}


def _bad_request(message: str) -> Response:
    return Response({"detail": message}, status=status.HTTP_400_BAD_REQUEST)


class JsonRefusalsMixin:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE is a JSON 413 with the limit, not Django's bare
    HTML 400 (Django raises while DRF reads the body, which happens during authentication)."""

    def handle_exception(self, exc):
        if isinstance(exc, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return Response(
                {"detail": f"The request body is larger than the {limit:,} bytes allowed here."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return super().handle_exception(exc)


# --- Views ---------------------------------------------------------------------------------


class DatasetListView(JsonRefusalsMixin, APIView):
    required_permissions = {"GET": "datasets.view_dataset", "POST": "datasets.add_dataset"}

    @extend_schema(responses=DatasetSerializer(many=True))
    def get(self, request):
        datasets = services.datasets_with_sample_counts().select_related("created_by")
        if is_device(request.user) and not request.user.token.all_loops:
            datasets = datasets.filter(loops__device_tokens=request.user.token).distinct()
        return Response(DatasetSerializer(datasets, many=True).data)

    @extend_schema(request=DatasetSerializer, responses={201: DatasetSerializer})
    def post(self, request):
        incoming = DatasetSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            dataset = services.create_dataset(created_by=request.user, **incoming.validated_data)
        except services.DatasetError as exc:
            return _bad_request(str(exc))
        dataset.sample_count = 0
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(JsonRefusalsMixin, APIView):
    required_permissions = {
        "GET": "datasets.view_dataset",
        "PATCH": "datasets.change_dataset",
        "DELETE": "datasets.delete_dataset",
    }

    def _dataset(self, dataset_id):
        check_device_may_use_dataset(self.request.user, dataset_id)
        return get_object_or_404(services.datasets_with_sample_counts(), pk=dataset_id)

    @extend_schema(responses=DatasetSerializer)
    def get(self, request, dataset_id: int):
        return Response(DatasetSerializer(self._dataset(dataset_id)).data)

    @extend_schema(request=DatasetChangeSerializer, responses=DatasetSerializer)
    def patch(self, request, dataset_id: int):
        dataset = self._dataset(dataset_id)
        change = DatasetChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        try:
            if "add_classes" in change.validated_data:
                services.add_classes(dataset.pk, change.validated_data["add_classes"])
        except services.DatasetError as exc:
            return _bad_request(str(exc))
        if "description" in change.validated_data:
            Dataset.objects.filter(pk=dataset.pk).update(
                description=change.validated_data["description"]
            )
        return Response(DatasetSerializer(self._dataset(dataset_id)).data)

    @extend_schema(responses={204: None, 409: ApiErrorSerializer})
    def delete(self, request, dataset_id: int):
        try:
            services.delete_dataset(get_object_or_404(Dataset, pk=dataset_id).pk)
        except services.DatasetError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _sample_request_limit() -> int:
    return settings.DATASET_MAX_IMAGE_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # image + boxes


class DatasetSamplesView(APIView):
    required_permissions = {"GET": "datasets.view_sample", "POST": "datasets.add_sample"}
    large_body = LargeBody("datasets.add_sample", _sample_request_limit)
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[SampleQuerySerializer],
        responses=inline_serializer(
            "SamplePage",
            {
                "results": SampleSerializer(many=True),
                "next_after": serializers.IntegerField(
                    allow_null=True, help_text="Pass as `after` for the next page; null: last page."
                ),
            },
        ),
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        check_device_may_use_dataset(request.user, dataset.pk)
        query = SampleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        filters = services.SampleFilters(
            status=wanted.get("status", ""),
            split=wanted.get("split", ""),
            source=wanted.get("source", ""),
            class_name=wanted.get("class", "").strip(),
        )
        page = keyset_page(
            services.filtered_samples(dataset.pk, filters),
            after=wanted.get("after"),
            size=wanted.get("limit", settings.DATASET_PAGE_SIZE),
        )
        results = SampleSerializer(page.items, many=True, context=_sample_context(page.items))
        return Response({"results": results.data, "next_after": page.next_after})

    @extend_schema(
        request={"multipart/form-data": SampleUploadSerializer},
        responses={201: SampleSerializer, 200: SampleSerializer},
        description="Stores one image (and its boxes, if given). A duplicate of an image "
        "already in the dataset answers 200 with the existing sample.",
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        check_device_may_use_dataset(request.user, dataset.pk)
        incoming = SampleUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        if data["image"].size > settings.DATASET_MAX_IMAGE_BYTES:  # checked before it is read
            return Response(
                {"detail": f"The image is larger than {settings.DATASET_MAX_IMAGE_BYTES:,} bytes."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        try:
            stored = services.store_sample(
                dataset,
                data["image"].read(),
                original_name=data["image"].name,
                source=SampleSource.DEVICE if is_device(request.user) else SampleSource.UPLOAD,
                user=None if is_device(request.user) else request.user,
                boxes=data.get("boxes"),
                split=data.get("split"),
                captured_at=data.get("captured_at"),
            )
        except (ImageRejected, BoxRejected, services.DatasetError) as exc:
            return _bad_request(str(exc))
        code = status.HTTP_201_CREATED if stored.created else status.HTTP_200_OK
        body = SampleSerializer(stored.sample).data | {"warnings": stored.warnings}
        return Response(body, status=code)


class DatasetImportView(APIView):
    required_permissions = {"POST": "datasets.add_sample"}
    large_body = LargeBody("datasets.add_sample", "DATASET_MAX_UPLOAD_BYTES")
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportSerializer},
        responses={
            202: inline_serializer(
                "ImportStarted",
                {
                    "job": serializers.DictField(),
                    "url": serializers.CharField(),
                    "api_url": serializers.CharField(),
                },
            )
        },
        description="Queues an import job for images, annotation files or zips; follow it at "
        "`api_url` (/api/v1/jobs/<id>/; a device token may read the jobs it started) or the "
        "page /jobs/<id>/. Its result holds the per-file report.",
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        check_device_may_use_dataset(request.user, dataset.pk)
        incoming = ImportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        files = incoming.validated_data["files"]
        adds_classes = incoming.validated_data["unknown_classes"] == UNKNOWN_CLASSES_ADD
        if adds_classes and not request.user.has_perm(services.ADD_CLASSES_PERMISSION):
            return Response(
                {"detail": services.ADD_CLASSES_REFUSED}, status=status.HTTP_403_FORBIDDEN
            )
        if sum(f.size for f in files) > settings.DATASET_MAX_UPLOAD_BYTES:
            return _bad_request(f"The upload is larger than {settings.DATASET_MAX_UPLOAD_BYTES:,}.")
        device = is_device(request.user)
        job = services.start_import(
            dataset,
            [(f.name, f) for f in files],
            user=None if device else request.user,
            started_by=request.user.get_username() if device else "",
            device=request.user.token if device else None,
            format=incoming.validated_data["format"],
            unknown_classes=incoming.validated_data["unknown_classes"],
            listed_without_labels=incoming.validated_data["listed_without_labels"],
            source=SampleSource.DEVICE if device else SampleSource.UPLOAD,
        )
        return Response(
            {
                "job": events.job_state(job),
                "url": reverse("jobs:detail", args=[job.pk]),
                "api_url": reverse("api-job", args=[job.pk]),
            },
            status=status.HTTP_202_ACCEPTED,
        )


class SampleDetailView(JsonRefusalsMixin, APIView):
    required_permissions = {
        "GET": "datasets.view_sample",
        "PATCH": "datasets.change_sample",
        "DELETE": "datasets.delete_sample",
    }

    @extend_schema(responses=SampleSerializer)
    def get(self, request, sample_id: int):
        sample = get_object_or_404(
            Sample.objects.select_related("current_annotation"), pk=sample_id
        )
        check_device_may_use_dataset(request.user, sample.dataset_id)
        return Response(SampleSerializer(sample).data)

    @extend_schema(
        request=SampleStatusChangeSerializer,
        responses={200: SampleSerializer, 409: ApiErrorSerializer},
        description="409 (`code` `claimed_by_other`) while another labeler holds the sample.",
    )
    def patch(self, request, sample_id: int):
        from apps.labeling import services as labeling

        get_object_or_404(Sample, pk=sample_id)
        change = SampleStatusChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        try:
            sample = labeling.set_status(sample_id, user=request.user, **change.validated_data)
        except labeling.ClaimedByOther as exc:
            return Response(
                {"detail": str(exc), "code": "claimed_by_other"}, status=status.HTTP_409_CONFLICT
            )
        except (services.DatasetError, labeling.LabelingError) as exc:
            return _bad_request(str(exc))
        return Response(SampleSerializer(sample).data)

    @extend_schema(responses={204: None, 409: ApiErrorSerializer})
    def delete(self, request, sample_id: int):
        try:
            services.delete_sample(get_object_or_404(Sample, pk=sample_id).pk)
        except services.DatasetError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SampleAnnotationsView(JsonRefusalsMixin, APIView):
    required_permissions = {"GET": "datasets.view_annotation", "POST": "datasets.add_annotation"}
    parser_classes = [JSONBodyParser]

    @extend_schema(responses=AnnotationSerializer(many=True))
    def get(self, request, sample_id: int):
        sample = get_object_or_404(Sample, pk=sample_id)
        check_device_may_use_dataset(request.user, sample.dataset_id)
        annotations = sample.annotations.select_related("created_by").prefetch_related("boxes")
        return Response(AnnotationSerializer(annotations, many=True).data)

    @extend_schema(
        request=AnnotationCreateSerializer,
        responses={201: AnnotationSerializer},
        description="Adds a revision; earlier revisions stay. Boxes overhanging the image are "
        "clipped (listed in `warnings`); NaN, inverted, empty or outside boxes and unknown "
        "classes are refused with 400; a stale `base_revision` or a sample claimed by another "
        "labeler with 409; a body over the size limit with 413. Where a loop on the dataset "
        "reviews labels, the revision waits for review (`held_for_review`).",
    )
    def post(self, request, sample_id: int):
        from apps.labeling import services as labeling

        get_object_or_404(Sample, pk=sample_id)
        incoming = AnnotationCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        boxes = [BoxSerializer().to_labeled_box(b) for b in incoming.validated_data["boxes"]]
        try:
            saved = labeling.save_label(
                sample_id,
                boxes,
                user=None if is_device(request.user) else request.user,
                base_revision=incoming.validated_data.get("base_revision"),
            )
        except BoxRejected as exc:
            return _bad_request(str(exc))
        except services.StaleRevision as exc:
            return Response(
                {"detail": str(exc), "code": "stale_revision"}, status=status.HTTP_409_CONFLICT
            )
        except labeling.ClaimedByOther as exc:
            return Response(
                {"detail": str(exc), "code": "claimed_by_other"}, status=status.HTTP_409_CONFLICT
            )
        body = AnnotationSerializer(saved.annotation).data | {
            "warnings": saved.warnings,
            "held_for_review": saved.held_for_review,
        }
        return Response(body, status=status.HTTP_201_CREATED)


# --- Exports and import reports --------------------------------------------------------------


class _FileRenderer(renderers.BaseRenderer):
    """Lets a client that asks for the file's type (Accept: application/zip) get it; the views
    answer with a FileResponse, and an error (a dict) is written as JSON."""

    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode() if data is not None else b""


class ZipRenderer(_FileRenderer):
    media_type = "application/zip"
    format = "zip"


class CsvRenderer(_FileRenderer):
    media_type = "text/csv"
    format = "csv"


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(EXPORT_FORMAT_LABELS), default="coco")
    status = serializers.ChoiceField(choices=SampleStatus.choices, required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    source = serializers.ChoiceField(choices=SampleSource.choices, required=False)
    class_name = serializers.CharField(
        required=False, max_length=100, help_text="Only samples with a box of this class."
    )


ExportStateSerializer = inline_serializer(
    "ExportState",
    {
        "job": serializers.DictField(),
        "url": serializers.CharField(),
        "download_url": serializers.CharField(allow_null=True),
    },
)


def _forbidden_dataset(user, dataset_id: int) -> Response | None:
    """A device token reaches only the datasets of the loops it is scoped to."""
    if is_device(user) and not user.token.may_use_dataset(dataset_id):
        return Response(
            {"detail": "This device token may not use this dataset."},
            status=status.HTTP_403_FORBIDDEN,
        )
    return None


def _export_state(job: Job) -> dict:
    done = job.status == "succeeded" and not (job.result or {}).get("expired")
    return {
        "job": events.job_state(job),
        "url": reverse("api-export", args=[job.pk]),
        "download_url": reverse("api-export-download", args=[job.pk]) if done else None,
    }


def _job_of_kind(job_id: int, kind: str, user) -> tuple[Job, Response | None]:
    job = get_object_or_404(Job, pk=job_id, kind=kind)
    return job, _forbidden_dataset(user, job.params.get("dataset_id"))


class DatasetExportView(APIView):
    required_permissions = {"POST": "datasets.view_dataset"}
    parser_classes = [JSONBodyParser, FormParser, MultiPartParser]

    @extend_schema(
        request=ExportRequestSerializer,
        responses={202: ExportStateSerializer, 409: ApiErrorSerializer},
        description="Queues an export job of the dataset (or the samples the filters select) "
        "as a zip in COCO, Pascal VOC, YOLO (Ultralytics) or YOLO (Darknet) layout. Follow "
        "`url`; when the job has succeeded, `download_url` serves the zip. 409: the same export "
        "finished just as this one was asked for; ask again.",
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        if (refused := _forbidden_dataset(request.user, dataset.pk)) is not None:
            return refused
        incoming = ExportRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        fmt = data.pop("format")
        if "class_name" in data:
            data["class"] = data.pop("class_name")
        device = is_device(request.user)
        try:
            job = start_export(
                dataset,
                fmt,
                data,
                user=None if device else request.user,
                started_by=request.user.get_username() if device else "",
                device=request.user.token if device else None,
            )
        except ExportError as exc:
            return _bad_request(str(exc))
        except JobPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except JobError as exc:  # the same export finished just now: asking again starts one
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(_export_state(job), status=status.HTTP_202_ACCEPTED)


class ExportDetailView(APIView):
    required_permissions = {"GET": "datasets.view_dataset"}

    @extend_schema(responses=ExportStateSerializer)
    def get(self, request, job_id: int):
        job, refused = _job_of_kind(job_id, "dataset_export", request.user)
        return refused or Response(_export_state(job))


class ExportDownloadView(APIView):
    required_permissions = {"GET": "datasets.view_dataset"}
    renderer_classes = [renderers.JSONRenderer, ZipRenderer]

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: None},
        description="The zip of a finished export (404 until the job has succeeded).",
    )
    def get(self, request, job_id: int):
        job, refused = _job_of_kind(job_id, "dataset_export", request.user)
        return refused or export_file_response(job)


class ImportReportView(APIView):
    required_permissions = {"GET": "datasets.view_dataset"}
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.BINARY, 404: None},
        description="The full report of a finished import as CSV (file, outcome, message); "
        "the job's result keeps only the counts and the first lines of each outcome.",
    )
    def get(self, request, job_id: int):
        job, refused = _job_of_kind(job_id, "dataset_import", request.user)
        return refused or import_report_response(job)
