"""REST API of the edge: predict, intake uploads from agents, model download, intake policy.

A device token may act only on the loops it is scoped to (403 otherwise); signed-in users need
the loop permissions. Rejected requests store nothing and are counted as the device's errors.
"""

import hashlib
import json
import logging
import math
import mimetypes
import re

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header, parse_etags
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api_auth import is_device
from apps.accounts.body_gate import LargeBody
from apps.datasets.boxes import BoxRejected, check_boxes
from apps.datasets.formats.base import LabeledBox
from apps.datasets.models import SampleSource
from apps.edge import prediction, services, serving
from apps.edge.models import IntakeMode
from apps.edge.prediction import (
    RequestRejected,
    check_rate,
    check_raw_body,
    check_raw_length,
    decode,
)
from apps.loops.models import Loop, ModelVersion
from ilportal.api_parsers import JSONBodyParser
from ilportal.api_schema import ApiErrorSerializer
from worker.ml.errors import MLError

logger = logging.getLogger(__name__)

# Multipart boundaries and headers around the images, and the intake upload's detection JSON.
MULTIPART_OVERHEAD_BYTES = 1024**2


class EdgeAccess(permissions.BasePermission):
    """Devices pass here (their loop scope is checked per view); users need `user_permissions`."""

    message = "Your role may not do this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if not hasattr(view, request.method.lower()):
            return True  # a method the view does not have: DRF's 405, not a role refusal
        # HEAD is a GET without the body: allowed wherever GET is.
        method = "GET" if request.method == "HEAD" else request.method
        if is_device(request.user):
            return method in getattr(view, "device_methods", ())
        needed = getattr(view, "user_permissions", {}).get(method)
        return needed is not None and request.user.has_perm(needed)


class EdgeView(APIView):
    permission_classes = [EdgeAccess]
    device_methods: tuple = ()
    user_permissions: dict = {}
    rate_limited = True

    def loop_for(self, request, loop_id: int) -> Loop:
        """The loop, 404 if none, 403 for a device outside its scope."""
        loop = get_object_or_404(
            Loop.objects.select_related("dataset", "intake_policy"), pk=loop_id
        )
        if is_device(request.user) and not request.user.token.may_use_loop(loop.pk):
            raise PermissionDenied(prediction.out_of_scope(loop))
        return loop

    def device(self, request, loop: Loop):
        if not is_device(request.user):
            return None
        return services.device_for(request.user.token, loop)

    def check_rate(self, request) -> None:
        if self.rate_limited:
            check_rate(request.user)

    def rejected(self, exc: RequestRejected, device=None) -> Response:
        prediction.count_error(device, exc)
        return Response({"detail": str(exc)}, status=exc.code, headers=exc.headers)


# --- Reading images from a request -----------------------------------------------------------


class RawBodyParser(BaseParser):
    """Lets a raw image body through untouched (`_read_images` reads it with a limit). Without
    it, the CSRF check of a signed-in user, which looks for a form token, made DRF parse the body
    and answer 415 to `image/png`."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


def _is_multipart(request) -> bool:
    return (request.content_type or "").startswith("multipart/form-data")


def _read_images(request) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image: multipart `image`/`images` parts, or the raw body."""
    max_bytes = settings.EDGE_MAX_IMAGE_BYTES
    if _is_multipart(request):
        files = request.FILES.getlist("images") + request.FILES.getlist("image")
        if not files:
            raise RequestRejected(
                400,
                "Send the image as a multipart part named 'image' (or several named 'images'), "
                "or as the raw request body.",
            )
        if len(files) > settings.EDGE_MAX_BATCH:
            raise RequestRejected(
                413, f"{len(files)} images in one request; at most {settings.EDGE_MAX_BATCH}."
            )
        images = []
        for index, upload in enumerate(files):
            if upload.size > max_bytes:
                raise RequestRejected(
                    413,
                    f"image {index} ({upload.name}): {upload.size:,} bytes, more than the "
                    f"limit of {max_bytes:,}",
                )
            images.append((upload.name or f"image-{index}", upload.read()))
        return images
    declared = request.META.get("CONTENT_LENGTH") or "0"
    check_raw_length(int(declared) if declared.isascii() and declared.isdigit() else 0)
    data = request._request.read(max_bytes + 1)
    check_raw_body(data)
    name = request.query_params.get("name") or "device-image"
    return [(name, data)]


# --- Predict ---------------------------------------------------------------------------------

BOX_FIELDS = {  # inline_serializer adds keys to this dict: never iterate it
    "class_name": serializers.CharField(),
    "score": serializers.FloatField(),
    "x1": serializers.FloatField(),
    "y1": serializers.FloatField(),
    "x2": serializers.FloatField(),
    "y2": serializers.FloatField(),
}
VERSION_FIELDS = {
    "id": serializers.IntegerField(),
    "number": serializers.IntegerField(),
    "label": serializers.CharField(),
}
RESULT_FIELDS = {
    "boxes": inline_serializer("PredictedBox", BOX_FIELDS, many=True),
    "hard": serializers.BooleanField(),
    "hardness": serializers.FloatField(),
    "miner": serializers.CharField(),
    "width": serializers.IntegerField(),
    "height": serializers.IntegerField(),
    "stored": serializers.BooleanField(),
    "queued": serializers.BooleanField(),
    "intake": serializers.CharField(help_text="Why the image was or was not kept."),
    "sample_id": serializers.IntegerField(allow_null=True),
}


def _predict_body_limit() -> int:
    return settings.EDGE_MAX_IMAGE_BYTES * settings.EDGE_MAX_BATCH + MULTIPART_OVERHEAD_BYTES


def _intake_body_limit() -> int:
    return settings.EDGE_MAX_IMAGE_BYTES + MULTIPART_OVERHEAD_BYTES


class PredictView(EdgeView):
    device_methods = ("POST",)
    user_permissions = {"POST": "loops.view_loop"}
    # Devices hold datasets.add_sample, people loops.view_loop: either may send images.
    large_body = LargeBody(("loops.view_loop", "datasets.add_sample"), _predict_body_limit)
    parser_classes = [MultiPartParser, FormParser, RawBodyParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "PredictUpload",
                {
                    "image": serializers.FileField(required=False),
                    "images": serializers.ListField(child=serializers.FileField(), required=False),
                },
            ),
            "image/*": bytes,
            "application/octet-stream": bytes,
        },
        responses={
            200: inline_serializer(
                "Prediction",
                {
                    "version": inline_serializer("AnsweringVersion", VERSION_FIELDS),
                    "loop": serializers.IntegerField(),
                    **RESULT_FIELDS,
                    "results": inline_serializer("BatchResult", RESULT_FIELDS, many=True),
                },
            )
        },
        description="Boxes of the loop's deployed model for one image (multipart `image` or "
        "the raw body) or a batch (multipart `images`, answered under `results`), with the "
        "version that answered, the miner's verdict, and what the intake policy kept. "
        "400/413 for unusable or too large images, 409 when no model is deployed, 429 with "
        "Retry-After over the per-device rate. Nothing is stored for a rejected request.",
    )
    def post(self, request, loop_id: int):
        try:
            loop, device = prediction.admit(request.user, loop_id)
            with prediction.errors_counted(device):
                images = _read_images(request)
            multipart = (request.content_type or "").startswith("multipart/form-data")
            body = prediction.predict(
                request.user, loop, device, images, batch=multipart and "images" in request.FILES
            )
        except RequestRejected as exc:
            return Response({"detail": str(exc)}, status=exc.code, headers=exc.headers)
        return Response(body)


# --- Intake from edge agents -----------------------------------------------------------------


INTAKE_MULTIPART = (
    "Send an intake upload as multipart/form-data with the parts image, detection (JSON) and "
    "version."
)


class IntakeUploadView(EdgeView):
    """An agent sends an image it answered and mined itself; the loop's policy decides."""

    device_methods = ("POST",)
    user_permissions = {}
    parser_classes = [MultiPartParser]
    large_body = LargeBody("datasets.add_sample", _intake_body_limit)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "IntakeUpload",
                {
                    "image": serializers.FileField(),
                    "detection": serializers.CharField(
                        help_text='JSON: {"boxes": [...], "hard": true/false, "hardness": float, '
                        '"miner": str}; boxes in pixels of the image as sent (upright)'
                    ),
                    "version": serializers.IntegerField(help_text="The version that answered."),
                },
            )
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="A retry with the same key (same loop, same image) gets the first "
                "answer and stores nothing; the key with another loop or image: 422; while the "
                "first request with it still runs: 409 with Retry-After.",
            )
        ],
        responses={
            200: inline_serializer(
                "IntakeDecision",
                {
                    **RESULT_FIELDS,
                    "warnings": serializers.ListField(
                        child=serializers.CharField(),
                        help_text="Boxes clipped to the image.",
                    ),
                    "replayed": serializers.BooleanField(required=False),
                },
            ),
            409: ApiErrorSerializer,
            415: ApiErrorSerializer,
            422: ApiErrorSerializer,
        },
        description="An agent's hard example (multipart only: 415 otherwise). Boxes are "
        "judged against the image as annotations are (400 outside it, clipped with `warnings` "
        "when they overhang). With an Idempotency-Key: a retry gets the first answer "
        "(`replayed`), the key with another loop or image 422, while the first request with "
        "it still runs 409 with Retry-After.",
    )
    def post(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        device = self.device(request, loop)
        claim = None
        try:
            if not _is_multipart(request):  # before the body is read or decoded
                raise RequestRejected(415, INTAKE_MULTIPART)
            key = _idempotency_key(request)
            self.check_rate(request)
            images = _read_images(request)
            if len(images) != 1:
                raise RequestRejected(400, "Send one image per intake upload.")
            sha256 = None
            if key:
                sha256 = hashlib.sha256(images[0][1]).hexdigest()
                claim, earlier = _claim(request.user.token, key, loop, sha256)
                if earlier is not None:
                    return Response(earlier | {"replayed": True})
            body = self._take_in(request, loop, device, images[0], sha256)
        except RequestRejected as exc:
            services.release_receipt(claim)
            return self.rejected(exc, device)
        except BaseException:
            services.release_receipt(claim)
            raise
        return Response(services.keep_receipt(claim, body))

    def _take_in(self, request, loop: Loop, device, image, sha256: str | None) -> dict:
        name, data = image
        detection = _parse_detection(request.data.get("detection"), loop)
        version_id = _parse_version(request.data.get("version"), loop)
        label = ModelVersion.objects.filter(pk=version_id).values_list("number", flat=True).first()
        with prediction.decoding_slot():
            (array,) = decode([image])
            height, width = array.shape[:2]
            warnings = _fit_boxes(detection, loop, width, height)
            (image_hash,) = services.perceptual_hashes(loop, [array], [detection])
            del array
        item = services.IntakeItem(
            data=data,
            original_name=name,
            detection=detection,
            version_id=version_id,
            version_label=f"v{label}" if label else "",
            image_hash=image_hash,
            sha256=sha256,
        )
        (decision,) = services.take_in(loop, [item], device=device, source=SampleSource.DEVICE)
        services.record_activity(
            device, version_id=version_id, images=1, hard=int(detection["hard"])
        )
        answer = {**detection, "width": width, "height": height, **decision.as_dict()}
        return answer | {"warnings": warnings}


def _idempotency_key(request) -> str:
    try:
        return services.receipt_key(request.headers.get("Idempotency-Key"))
    except services.EdgeError as exc:
        raise RequestRejected(400, str(exc)) from exc


def _claim(token, key: str, loop: Loop, image_sha256: str):
    try:
        return services.claim_receipt(token, key, loop=loop, image_sha256=image_sha256)
    except services.ReceiptConflict as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise RequestRejected(exc.code, str(exc), headers) from exc


def _finite(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RequestRejected(400, f"detection: {what} must be a number") from exc
    if not math.isfinite(number):
        raise RequestRejected(400, f"detection: {what} must be finite")
    return number


def _parse_detection(raw, loop: Loop) -> dict:
    """The agent's detection, checked for form; its boxes are checked against the image by
    `_fit_boxes` once the image is decoded."""
    if not isinstance(raw, str | None):
        raise RequestRejected(400, "detection must be a form field holding JSON, not a file")
    try:
        data = json.loads(raw or "")
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(400, f"detection must be JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("boxes", []), list):
        raise RequestRejected(400, 'detection must be {"boxes": [...], "hard": ..., ...}')
    boxes = []
    for number, box in enumerate(data.get("boxes", []), start=1):
        if not isinstance(box, dict) or box.get("class_name") not in loop.dataset.class_names:
            raise RequestRejected(400, f"detection: box {number} has no known class_name")
        numbers = {
            name: _finite(box.get(name), f"box {number} {name}")
            for name in ("score", "x1", "y1", "x2", "y2")
        }
        if not 0.0 <= numbers["score"] <= 1.0:
            raise RequestRejected(400, f"detection: box {number} score must lie in [0, 1]")
        boxes.append({"class_name": box["class_name"], **numbers})
    hard = data.get("hard", False)
    if not isinstance(hard, bool):
        raise RequestRejected(
            400, f'detection: "hard" must be true or false (a JSON boolean), not {_shown(hard)}'
        )
    hardness = _finite(data.get("hardness", 0.0), "hardness")
    return {
        "boxes": boxes,
        "hard": hard,
        "hardness": min(max(hardness, 0.0), 1.0),
        "miner": services.without_nul(str(data.get("miner", "")))[:60],
    }


def _fit_boxes(detection: dict, loop: Loop, width: int, height: int) -> list[str]:
    """Judges the boxes against the image as the annotations API does (at most
    DATASET_MAX_BOXES_PER_IMAGE; inverted, empty or wholly outside boxes refused, overhanging
    ones clipped); returns the clip warnings."""
    boxes = detection["boxes"]
    try:
        checked = check_boxes(
            [LabeledBox(b["class_name"], b["x1"], b["y1"], b["x2"], b["y2"]) for b in boxes],
            width,
            height,
            loop.dataset.class_names,
        )
    except BoxRejected as exc:
        raise RequestRejected(400, f"detection: {exc}") from exc
    detection["boxes"] = [
        {"class_name": box["class_name"], "score": box["score"]}
        | {"x1": fitted.x1, "y1": fitted.y1, "x2": fitted.x2, "y2": fitted.y2}
        for box, fitted in zip(boxes, checked.boxes, strict=True)
    ]
    return checked.warnings


def _shown(value) -> str:
    """A value as JSON for a message, cut short."""
    text = json.dumps(value) if not hasattr(value, "read") else "a file"
    return text if len(text) <= 40 else text[:37] + "..."


# Ids are 64-bit (BigAutoField); a string id is ASCII digits.
_ID = re.compile(r"[0-9]{1,19}")


def _parse_version(raw, loop: Loop) -> int | None:
    """A version id of this loop: an integer (JSON) or its digits (a form field); None if not
    sent. ``true`` or ``1.5`` is not an id."""
    if raw is None or raw == "":
        return None
    version_id = None
    if isinstance(raw, bool):
        pass
    elif isinstance(raw, int):
        version_id = raw
    elif isinstance(raw, float) and raw.is_integer():
        version_id = int(raw)
    elif isinstance(raw, str) and _ID.fullmatch(raw.strip()):
        version_id = int(raw.strip())
    if version_id is None:
        raise RequestRejected(400, f"version must be a version id (an integer), not {_shown(raw)}")
    if not 0 < version_id < 2**63 or not (
        ModelVersion.objects.filter(pk=version_id, loop=loop).exists()
    ):
        raise RequestRejected(400, f"version {version_id} is not a version of this loop")
    return version_id


# A heartbeat's health is written to the device's row on every beat: a few KB is what the agent
# sends (its errors cut to ERROR_CHARS in worker/edge/agent.py); 2.5 MB was taken before.
MAX_HEALTH_BYTES = 64 * 1024


class HeartbeatView(EdgeView):
    """An agent says which version it runs and how it is; the fleet page shows it."""

    device_methods = ("POST",)
    parser_classes = [JSONBodyParser]

    @extend_schema(
        request=inline_serializer(
            "Heartbeat",
            {
                "version": serializers.IntegerField(
                    required=False,
                    allow_null=True,
                    min_value=1,
                    help_text="The version the agent serves (null: none yet).",
                ),
                "health": serializers.DictField(
                    required=False,
                    allow_null=True,
                    help_text="What the agent reports; the fleet page shows it.",
                ),
            },
        ),
        responses={204: None},
    )
    def post(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        device = self.device(request, loop)
        try:
            self.check_rate(request)
            if not isinstance(request.data, dict):
                raise RequestRejected(
                    400, 'The body must be a JSON object: {"version": <id>, "health": {...}}.'
                )
            version = request.data.get("version")
            if isinstance(version, str):  # digits are for the intake's form field, not JSON
                raise RequestRejected(400, "version must be a version id (an integer) or null.")
            version_id = _parse_version(version, loop)
            health = request.data.get("health")
            if health is not None and not isinstance(health, dict):
                raise RequestRejected(400, "health must be a JSON object.")
            health_bytes = len(json.dumps(health)) if health is not None else 0
            if health_bytes > MAX_HEALTH_BYTES:  # written on every beat; the fleet page shows it
                raise RequestRejected(
                    413, f"health is {health_bytes:,} bytes as JSON; at most {MAX_HEALTH_BYTES:,}."
                )
        except RequestRejected as exc:
            return self.rejected(exc, device)
        services.record_activity(
            device,
            version_id=version_id,
            health=health,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Model download --------------------------------------------------------------------------


def _deployed(loop: Loop) -> ModelVersion:
    if loop.deployed_version_id is None:
        raise RequestRejected(409, f"Loop {loop.name!r} has no deployed model yet.")
    return ModelVersion.objects.get(pk=loop.deployed_version_id)


def _requested_version(loop: Loop, value: str | None) -> ModelVersion:
    if value is None:
        return _deployed(loop)
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise RequestRejected(400, f"version must be a version id, got {value[:40]!r}.")
    version = ModelVersion.objects.filter(pk=int(value), loop=loop).first()
    if version is None:
        raise RequestRejected(404, f"Loop {loop.name!r} has no version with id {value}.")
    return version


def _manifest(request, loop: Loop, version: ModelVersion) -> dict:
    from django.urls import reverse

    from apps.edge.preparation import EdgePreparationError, ensure_edge_model

    try:
        decoder = ensure_edge_model(version).decoder_config
    except EdgePreparationError as exc:
        raise RequestRejected(409, f"{version.label} cannot be served: {exc}") from exc
    try:
        miner = serving.miner_spec(loop)
    except MLError as exc:  # a YAML stored before a rule it now breaks (ALGORITHM_PLUGINS)
        raise RequestRejected(409, f"The loop's algorithm YAML cannot be used: {exc}") from exc
    policy = services.policy_for(loop)
    return {
        "loop": {"id": loop.pk, "name": loop.name},
        "version": {"id": version.pk, "number": version.number, "label": version.label},
        "class_names": version.class_names,
        # The file URLs name the version: a download that starts after a deploy or rollback
        # still gets the file this manifest describes (its sha256), not the next version's.
        "litert": {
            "url": request.build_absolute_uri(
                reverse("api-edge-model-litert", args=[loop.pk]) + f"?version={version.pk}"
            ),
            "sha256": version.litert_sha256,
            "size": _stored_size(version, version.litert.name) if version.litert_sha256 else None,
        }
        if version.litert_sha256
        else None,
        "archive": {
            "url": request.build_absolute_uri(
                reverse("api-edge-model-archive", args=[loop.pk]) + f"?version={version.pk}"
            ),
            "sha256": version.artifact_sha256,
            "size": version.artifact_size,
        },
        "decoder": decoder,
        "miner": miner.as_dict() if miner else None,
        "intake": {
            "mode": policy.mode,
            "sample_percent": policy.sample_percent if policy.mode == IntakeMode.SAMPLE else 0,
        },
    }


def _stored_size(version: ModelVersion, name: str) -> int:
    from django.core.files.storage import default_storage

    try:
        return default_storage.size(name)
    except FileNotFoundError:
        raise _missing_from_storage(version, name) from None


def _missing_from_storage(version: ModelVersion, name: str) -> RequestRejected:
    """A file the database names but storage lost: the operator's to restore (logged), and a
    clear answer for the device, which keeps serving the model it has."""
    logger.error("%s of loop %s: %s is missing from storage", version.label, version.loop_id, name)
    return RequestRejected(
        409,
        f"{version.label}'s file {name} is missing from storage: an operator must restore it, "
        "or deploy another version.",
    )


def _etag(*parts) -> str:
    return '"' + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32] + '"'


def _not_modified(request, etag: str) -> bool:
    """If-None-Match by the weak comparison (RFC 9110, 13.1.2): `W/"x"` matches `"x"` (proxies
    that compress make ETags weak), as does `*`."""
    sent = parse_etags(request.headers.get("If-None-Match", ""))
    return sent == ["*"] or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in sent}


class ModelManifestView(EdgeView):
    device_methods = ("GET",)
    user_permissions = {"GET": "loops.view_modelversion"}
    rate_limited = False  # polls are cheap: a 304 costs one query

    @extend_schema(
        responses={200: dict, 304: None, 409: None},
        description="The deployed version: LiteRT file and archive (URLs, sha256), the box "
        "decoder's config, the loop's miner and intake share. Send If-None-Match with the "
        "ETag you have: 304 while nothing changed.",
    )
    def get(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        device = self.device(request, loop)
        try:
            version = _deployed(loop)
            policy = services.policy_for(loop)
            etag = _etag(
                version.pk,
                version.litert_sha256,
                loop.algorithm_yaml,
                policy.mode,
                policy.sample_percent,
            )
            if device is not None:
                services.record_activity(device)
            if _not_modified(request, etag):
                return HttpResponse(status=304, headers={"ETag": etag})
            body = _manifest(request, loop, version)
        except RequestRejected as exc:
            return self.rejected(exc, device)
        return Response(body, headers={"ETag": etag, "Cache-Control": "no-cache"})


class _ModelFileView(EdgeView):
    device_methods = ("GET",)
    user_permissions = {"GET": "loops.view_modelversion"}
    rate_limited = False

    def file_of(self, version: ModelVersion) -> tuple[str, str, str]:
        raise NotImplementedError

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "version",
                {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                description="A version of this loop (the manifest's URLs name theirs); without "
                "it, the deployed version.",
            )
        ],
        responses={
            (200, "application/octet-stream"): bytes,  # the LiteRT file
            (200, "application/zip"): bytes,  # the model archive
            304: None,
            404: None,
            409: None,
        },
    )
    def get(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        device = self.device(request, loop)
        try:
            version = _requested_version(loop, request.query_params.get("version"))
            name, sha256, filename = self.file_of(version)
        except RequestRejected as exc:
            return self.rejected(exc, device)
        etag = f'"{sha256}"'
        headers = {
            "ETag": etag,
            "X-Model-Version": str(version.pk),
            "X-Model-Version-Label": version.label,
            "X-Content-SHA256": sha256,
        }
        if _not_modified(request, etag):
            return HttpResponse(status=304, headers=headers)
        from django.core.files.storage import default_storage

        try:
            if request.method == "HEAD":  # GET's headers, without opening the file
                content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                response = HttpResponse(content_type=content_type, headers=headers)
                response["Content-Length"] = str(default_storage.size(name))
                response["Content-Disposition"] = content_disposition_header(True, filename)
                return response
            stored = default_storage.open(name, "rb")
        except FileNotFoundError:
            return self.rejected(_missing_from_storage(version, name), device)
        response = FileResponse(stored, as_attachment=True, filename=filename)
        for header, value in headers.items():
            response[header] = value
        return response


class ModelLiteRTView(_ModelFileView):
    def file_of(self, version):
        if not version.litert_sha256:
            raise RequestRejected(
                409,
                f"{version.label} has no LiteRT file: deploy it again (the deploy converts it).",
            )
        return version.litert.name, version.litert_sha256, f"{version.label}.tflite"


class ModelArchiveView(_ModelFileView):
    def file_of(self, version):
        return version.artifact.name, version.artifact_sha256, f"{version.label}-model.zip"


# --- Intake policy ---------------------------------------------------------------------------


# The largest value of a PositiveIntegerField on every database Django supports.
POSITIVE_INT_MAX = 2**31 - 1


class IntakePolicySerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=IntakeMode.choices, required=False)
    sample_percent = serializers.FloatField(min_value=0, max_value=100, required=False)
    hard_per_hour = serializers.IntegerField(
        min_value=0, max_value=POSITIVE_INT_MAX, required=False
    )
    hard_per_day = serializers.IntegerField(min_value=0, max_value=POSITIVE_INT_MAX, required=False)
    duplicate_window = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    duplicate_distance = serializers.IntegerField(min_value=0, max_value=64, required=False)

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                allowed = ", ".join(self.fields)
                raise serializers.ValidationError(
                    {name: [f"Not an intake setting; they are: {allowed}."] for name in unknown}
                )
        return attrs


class IntakePolicyView(EdgeView):
    device_methods = ()
    user_permissions = {"GET": "loops.view_loop", "PUT": "loops.change_loop"}
    parser_classes = [JSONBodyParser]
    rate_limited = False

    @extend_schema(responses=IntakePolicySerializer)
    def get(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        return Response(services.policy_dict(services.policy_for(loop)))

    @extend_schema(request=IntakePolicySerializer, responses=IntakePolicySerializer)
    def put(self, request, loop_id: int):
        loop = self.loop_for(request, loop_id)
        incoming = IntakePolicySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            policy = services.update_policy(loop, **incoming.validated_data)
        except services.EdgeError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(services.policy_dict(policy))
