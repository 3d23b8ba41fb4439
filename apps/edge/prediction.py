"""Answering a predict request: who may ask, the image checks, the model's boxes, the intake.

Two front doors share this code and so answer the same request the same way: the REST view
(apps.edge.api.PredictView, for every kind of request) and the ASGI route for devices that send
one raw image (apps.edge.predict_route, which skips Django's request cycle to keep the fixed
cost of a request small). Neither reads the database per request unless the intake keeps the
image: tokens, loops and models come from the serving caches.
"""

import contextlib
import threading

from django.conf import settings

from apps.accounts.api_auth import is_device
from apps.datasets.image_checks import FORMAT_EXTENSIONS
from apps.datasets.models import SampleSource
from apps.edge import ratelimit, services, serving
from apps.edge.models import EdgeDevice
from apps.loops.models import Loop


class RequestRejected(Exception):
    """A clear refusal: HTTP ``code`` with ``message`` as the `detail`; nothing was stored."""

    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.headers = headers or {}


def scoped_loop(user, loop_id: int) -> Loop:
    """The loop from the serving cache: 404 if there is none, 403 for a device outside its
    scope. For reading only: the policy object is shared between requests."""
    loop = serving.serving_loop(loop_id)
    if loop is None:
        raise RequestRejected(404, "No Loop matches the given query.")
    if is_device(user) and not user.token.may_use_loop(loop.pk):
        raise RequestRejected(403, out_of_scope(loop))
    return loop


def out_of_scope(loop: Loop) -> str:
    return (
        f"This device token is not scoped to loop {loop.name!r}; an admin can add the loop to it "
        "on the Devices page."
    )


def check_rate(user) -> None:
    """429 with Retry-After for a device over its requests per minute; people are not limited."""
    if not is_device(user):
        return
    wait = ratelimit.retry_after_s(user.token.token_sha256[:24])
    if wait is not None:
        raise RequestRejected(
            429,
            f"More than {settings.EDGE_DEVICE_REQUESTS_PER_MINUTE} requests a minute from this "
            f"device: try again in {wait} s.",
            {"Retry-After": str(wait)},
        )


def count_error(device: EdgeDevice | None, exc: RequestRejected) -> None:
    """A refusal goes into the device's books (a rate refusal does not: counting it would cost
    a database write per refused request)."""
    if device is not None and exc.code != 429:
        services.record_error(device, f"{exc.code}: {exc}")


@contextlib.contextmanager
def errors_counted(device: EdgeDevice | None):
    try:
        yield
    except RequestRejected as exc:
        count_error(device, exc)
        raise


def admit(user, loop_id: int) -> tuple[Loop, EdgeDevice | None]:
    """Checks made before the body is read: the loop and scope, the rate, a deployed model."""
    loop = scoped_loop(user, loop_id)
    device = services.device_for(user.token, loop) if is_device(user) else None
    with errors_counted(device):
        check_rate(user)
        if loop.deployed_version_id is None:
            raise RequestRejected(
                409, f"Loop {loop.name!r} has no deployed model yet: deploy a version first."
            )
    return loop, device


_decode_slots: threading.BoundedSemaphore | None = None
_decode_slots_lock = threading.Lock()


@contextlib.contextmanager
def decoding_slot():
    """One of ``EDGE_CONCURRENT_DECODES`` places for decoded images in this process, held until
    they are dropped: with the per-request pixel limit, this bounds the memory that concurrent
    requests can make the process hold (each request gets its own thread on Django's path)."""
    global _decode_slots
    with _decode_slots_lock:
        if _decode_slots is None:
            _decode_slots = threading.BoundedSemaphore(settings.EDGE_CONCURRENT_DECODES)
    if not _decode_slots.acquire(timeout=settings.EDGE_DECODE_WAIT_S):
        raise RequestRejected(
            503, "The server is decoding other images; try again shortly.", {"Retry-After": "1"}
        )
    try:
        yield
    finally:
        _decode_slots.release()


def decode(images: list[tuple[str, bytes]]):
    """Each image as an RGB array, with the formats and limits the datasets accept (an image the
    intake stores passes store_sample's checks too); 400/413 naming the image otherwise. The
    images of one request hold at most ``EDGE_MAX_REQUEST_PIXELS`` together, checked from each
    image's header before it is decoded. Call it inside ``decoding_slot()``."""
    from worker.edge.inference import ImageTooLarge, ImageUnusable, TooManyPixels, decode_image

    arrays = []
    many = len(images) > 1
    pixels_left = settings.EDGE_MAX_REQUEST_PIXELS
    for index, (name, data) in enumerate(images):
        where = f"image {index} ({name}): " if many else ""
        request_limited = pixels_left < settings.EDGE_MAX_IMAGE_PIXELS
        try:
            array = decode_image(
                data,
                max_bytes=settings.EDGE_MAX_IMAGE_BYTES,
                max_pixels=min(settings.EDGE_MAX_IMAGE_PIXELS, pixels_left),
                formats=tuple(FORMAT_EXTENSIONS),
            )
        except TooManyPixels as exc:
            if request_limited:
                raise RequestRejected(
                    413,
                    f"{where}the images of one request may have "
                    f"{settings.EDGE_MAX_REQUEST_PIXELS:,} pixels together; send fewer or "
                    "smaller images per request.",
                ) from exc
            raise RequestRejected(413, f"{where}{exc}") from exc
        except ImageTooLarge as exc:
            raise RequestRejected(413, f"{where}{exc}") from exc
        except ImageUnusable as exc:
            raise RequestRejected(400, f"{where}{exc}") from exc
        pixels_left -= array.shape[0] * array.shape[1]
        arrays.append(array)
    return arrays


def check_raw_length(declared: int) -> None:
    """A raw image body announced larger than the image limit: 413 before reading it."""
    limit = settings.EDGE_MAX_IMAGE_BYTES
    if declared > limit:
        raise RequestRejected(413, f"{declared:,} bytes, more than the limit of {limit:,}")


def check_raw_size(size: int) -> None:
    """413 once a raw image body read so far passes the image limit."""
    limit = settings.EDGE_MAX_IMAGE_BYTES
    if size > limit:
        raise RequestRejected(413, f"more than the limit of {limit:,} bytes")


def check_raw_body(data: bytes) -> None:
    check_raw_size(len(data))
    if not data:
        raise RequestRejected(400, "Empty body: send the image's bytes (or multipart 'image').")


def _detect(loop: Loop, device: EdgeDevice | None, images):
    """The part that holds decoded images (call it inside ``decoding_slot()``): they are
    dropped when it returns, with what the intake needs of them (the perceptual hashes)."""
    with errors_counted(device):
        arrays = decode(images)
        try:
            model = serving.served_model(loop)
        except serving.NotServable as exc:
            raise RequestRejected(409, str(exc)) from exc
        detections = [detection.as_dict() for detection in model.detector.detect(arrays)]
    return model, detections, services.perceptual_hashes(loop, arrays, detections)


def predict(
    user, loop: Loop, device: EdgeDevice | None, images: list[tuple[str, bytes]], *, batch: bool
) -> dict:
    """The answer to an admitted request: boxes, the miner's verdict and what the intake kept,
    for one image, or under `results` for a batch."""
    with decoding_slot():
        model, detections, hashes = _detect(loop, device, images)
    items = [
        services.IntakeItem(
            data=data,
            original_name=name,
            detection=detection,
            version_id=model.version_id,
            version_label=model.label,
            image_hash=image_hash,
        )
        for (name, data), detection, image_hash in zip(images, detections, hashes, strict=True)
    ]
    decisions = services.take_in(
        loop,
        items,
        device=device,
        source=SampleSource.DEVICE if device else SampleSource.UPLOAD,
        user=None if device else user,
    )
    results = [
        detection | decision.as_dict()
        for detection, decision in zip(detections, decisions, strict=True)
    ]
    if device is not None:
        services.record_activity(
            device,
            version_id=model.version_id,
            images=len(results),
            hard=sum(1 for r in results if r["hard"]),
        )
    body = {"version": model.version_dict(), "loop": loop.pk}
    if len(results) == 1 and not batch:
        return body | results[0]
    return body | {"results": results}
