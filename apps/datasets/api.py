"""REST API v1 for datasets, samples and annotations (documented at /api/v1/schema/).

Views parse, check the permission named in `required_permissions`, call one service, answer.
"""

import json

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api_auth import is_device
from apps.datasets import services
from apps.datasets.boxes import BoxRejected
from apps.datasets.formats.base import LabeledBox
from apps.datasets.image_checks import ImageRejected
from apps.datasets.importing import FORMAT_CHOICES, UNKNOWN_CLASSES_ADD, UNKNOWN_CLASSES_REJECT
from apps.datasets.models import Annotation, Dataset, Sample, SampleSource, SampleStatus, Split
from apps.datasets.pagination import keyset_page
from apps.jobs import events

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
    sample_count = serializers.IntegerField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    captured_at = serializers.DateTimeField(required=False)

    def validate_boxes(self, raw):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValidationError(f"not valid JSON: {exc}") from exc
        boxes = BoxSerializer(data=data, many=True)
        boxes.is_valid(raise_exception=True)
        return [BoxSerializer().to_labeled_box(box) for box in boxes.validated_data]


class AnnotationCreateSerializer(serializers.Serializer):
    boxes = BoxSerializer(many=True)


class ImportSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    format = serializers.ChoiceField(choices=FORMAT_CHOICES, default="auto")
    unknown_classes = serializers.ChoiceField(
        choices=[UNKNOWN_CLASSES_REJECT, UNKNOWN_CLASSES_ADD], default=UNKNOWN_CLASSES_REJECT
    )


def _sample_context(samples: list[Sample]) -> dict:
    """Boxes and revision numbers of a page of samples in two queries."""
    ids = [s.current_annotation_id for s in samples if s.current_annotation_id]
    revisions = dict(Annotation.objects.filter(pk__in=ids).values_list("id", "revision"))
    return {"boxes_by_annotation": services.boxes_by_annotation(ids), "revisions": revisions}


def _bad_request(message: str) -> Response:
    return Response({"detail": message}, status=status.HTTP_400_BAD_REQUEST)


# --- Views ---------------------------------------------------------------------------------


class DatasetListView(APIView):
    required_permissions = {"GET": "datasets.view_dataset", "POST": "datasets.add_dataset"}

    @extend_schema(responses=DatasetSerializer(many=True))
    def get(self, request):
        datasets = services.datasets_with_sample_counts().select_related("created_by")
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


class DatasetDetailView(APIView):
    required_permissions = {
        "GET": "datasets.view_dataset",
        "PATCH": "datasets.change_dataset",
        "DELETE": "datasets.delete_dataset",
    }

    def _dataset(self, dataset_id):
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

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request, dataset_id: int):
        try:
            services.delete_dataset(get_object_or_404(Dataset, pk=dataset_id).pk)
        except services.DatasetError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetSamplesView(APIView):
    required_permissions = {"GET": "datasets.view_sample", "POST": "datasets.add_sample"}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=SampleStatus.values),
            OpenApiParameter("split", enum=Split.values),
            OpenApiParameter("source", enum=SampleSource.values),
            OpenApiParameter("class", str, description="Samples with a box of this class"),
            OpenApiParameter("after", int, description="Keyset cursor: next_after of a page"),
            OpenApiParameter("limit", int, description=f"Page size, at most {MAX_API_PAGE}"),
        ],
        responses=inline_serializer(
            "SamplePage",
            {"results": SampleSerializer(many=True), "next_after": serializers.IntegerField()},
        ),
    )
    def get(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        try:
            limit = min(
                int(request.query_params.get("limit", settings.DATASET_PAGE_SIZE)), MAX_API_PAGE
            )
        except ValueError:
            return _bad_request("limit must be an integer.")
        filters = services.SampleFilters.from_query(request.query_params)
        page = keyset_page(
            services.filtered_samples(dataset.pk, filters),
            after=request.query_params.get("after"),
            size=max(limit, 1),
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
        incoming = SampleUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
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
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportSerializer},
        responses={
            202: inline_serializer(
                "ImportStarted", {"job": serializers.DictField(), "url": serializers.CharField()}
            )
        },
        description="Queues an import job for images, annotation files or zips; follow it at "
        "/jobs/<id>/ (its result holds the per-file report).",
    )
    def post(self, request, dataset_id: int):
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        incoming = ImportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        files = incoming.validated_data["files"]
        if sum(f.size for f in files) > settings.DATASET_MAX_UPLOAD_BYTES:
            return _bad_request(f"The upload is larger than {settings.DATASET_MAX_UPLOAD_BYTES:,}.")
        device = is_device(request.user)
        job = services.start_import(
            dataset,
            [(f.name, f) for f in files],
            user=None if device else request.user,
            started_by=request.user.get_username() if device else "",
            format=incoming.validated_data["format"],
            unknown_classes=incoming.validated_data["unknown_classes"],
            source=SampleSource.DEVICE if device else SampleSource.UPLOAD,
        )
        return Response(
            {"job": events.job_state(job), "url": reverse("jobs:detail", args=[job.pk])},
            status=status.HTTP_202_ACCEPTED,
        )


class SampleDetailView(APIView):
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
        return Response(SampleSerializer(sample).data)

    @extend_schema(
        request=inline_serializer(
            "SampleStatusChange", {"status": serializers.ChoiceField(choices=SampleStatus.choices)}
        ),
        responses=SampleSerializer,
    )
    def patch(self, request, sample_id: int):
        get_object_or_404(Sample, pk=sample_id)
        try:
            sample = services.set_sample_status(sample_id, str(request.data.get("status", "")))
        except services.DatasetError as exc:
            return _bad_request(str(exc))
        return Response(SampleSerializer(sample).data)

    @extend_schema(responses={204: None})
    def delete(self, request, sample_id: int):
        try:
            services.delete_sample(get_object_or_404(Sample, pk=sample_id).pk)
        except services.DatasetError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SampleAnnotationsView(APIView):
    required_permissions = {"GET": "datasets.view_annotation", "POST": "datasets.add_annotation"}
    parser_classes = [JSONParser]

    @extend_schema(responses=AnnotationSerializer(many=True))
    def get(self, request, sample_id: int):
        sample = get_object_or_404(Sample, pk=sample_id)
        annotations = sample.annotations.select_related("created_by").prefetch_related("boxes")
        return Response(AnnotationSerializer(annotations, many=True).data)

    @extend_schema(
        request=AnnotationCreateSerializer,
        responses={201: AnnotationSerializer},
        description="Adds a revision; earlier revisions stay. Boxes overhanging the image are "
        "clipped (listed in `warnings`); NaN, inverted, empty or outside boxes and unknown "
        "classes are refused with 400.",
    )
    def post(self, request, sample_id: int):
        get_object_or_404(Sample, pk=sample_id)
        incoming = AnnotationCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        boxes = [BoxSerializer().to_labeled_box(b) for b in incoming.validated_data["boxes"]]
        try:
            annotation, warnings = services.submit_annotation(
                sample_id, boxes, user=None if is_device(request.user) else request.user
            )
        except BoxRejected as exc:
            return _bad_request(str(exc))
        body = AnnotationSerializer(annotation).data | {"warnings": warnings}
        return Response(body, status=status.HTTP_201_CREATED)
