"""Verbs of the edge: keep (or not) what devices send, by the loop's intake policy; keep the
fleet's books; set the policy. The API views call these and nothing else."""

import logging
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from django.db import IntegrityError, transaction
from django.db.models import Count, DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.datasets import services as datasets
from apps.datasets.models import Sample, SampleSource, SampleStatus
from apps.edge.models import (
    EdgeDevice,
    IntakeMode,
    IntakeOutcome,
    IntakePolicy,
    IntakeRecord,
    UploadReceipt,
)
from apps.loops.models import Loop, ModelVersion
from apps.ops.redis_client import get_redis, key

logger = logging.getLogger(__name__)


class EdgeError(Exception):
    """Bad input to an edge verb; the message is meant for the user."""


# --- Intake policy ---------------------------------------------------------------------------


def policy_for(loop: Loop) -> IntakePolicy:
    """The loop's policy (the defaults on first use); free when the loop was read with
    ``select_related("intake_policy")``."""
    try:
        return loop.intake_policy
    except IntakePolicy.DoesNotExist:
        policy, _ = IntakePolicy.objects.get_or_create(loop=loop)
        return policy


POLICY_FIELDS = (
    "mode",
    "sample_percent",
    "hard_per_hour",
    "hard_per_day",
    "duplicate_window",
    "duplicate_distance",
)


def update_policy(loop: Loop, **values) -> IntakePolicy:
    unknown = sorted(set(values) - set(POLICY_FIELDS))
    if unknown:
        raise EdgeError(f"Unknown intake setting(s) {unknown}; allowed: {list(POLICY_FIELDS)}.")
    policy = policy_for(loop)
    for name, value in values.items():
        setattr(policy, name, value)
    if policy.mode not in IntakeMode.values:
        raise EdgeError(f"Intake mode must be one of {', '.join(IntakeMode.values)}.")
    if not 0 <= float(policy.sample_percent) <= 100:
        raise EdgeError("The sampled share is a percentage: 0 to 100.")
    for name in ("hard_per_hour", "hard_per_day", "duplicate_window"):
        if int(getattr(policy, name)) < 0:
            raise EdgeError(f"{name} cannot be negative.")
    if not 0 <= int(policy.duplicate_distance) <= 64:
        raise EdgeError("duplicate_distance counts differing bits of a 64-bit hash: 0 to 64.")
    policy.save()
    return policy


def policy_dict(policy: IntakePolicy) -> dict:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


# --- Intake ----------------------------------------------------------------------------------


@dataclass
class IntakeItem:
    """One answered image that the policy may keep."""

    data: bytes
    original_name: str
    detection: dict  # boxes, hard, hardness, miner
    version_id: int | None
    version_label: str
    image_hash: int | None  # perceptual, unsigned 64-bit; None where the policy keeps nothing
    captured_at: object = None
    sha256: str | None = None  # of `data`, where the caller has it already


# Control characters (C0, DEL, C1): a device's file name is shown and stored, and PostgreSQL
# refuses a NUL in a text column (a `?name=` with %00 was a 500, after the image was answered).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def storable_name(name: str) -> str:
    """A device's image name as the dataset keeps it: without control characters."""
    return _CONTROL.sub(" ", name or "").strip() or "device-image"


def without_nul(value):
    """``value`` (parsed JSON: changed in place) without NUL characters in its strings and keys:
    PostgreSQL refuses them in text and jsonb, so a device's heartbeat whose health quoted a
    proxy's page with a NUL in it, or an intake upload naming such a miner, was a 500. A loop,
    not recursion: the JSON may be nested as deep as the parser allows."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    stack = [value] if isinstance(value, dict | list) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for name in [name for name in node if "\x00" in name]:
                node[name.replace("\x00", "")] = node.pop(name)
        for index, item in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(item, str):
                node[index] = item.replace("\x00", "")
            elif isinstance(item, dict | list):
                stack.append(item)
    return value


def _may_keep(policy: IntakePolicy, detection: dict) -> bool:
    return policy.mode == IntakeMode.SAMPLE or (
        policy.mode == IntakeMode.HARD and bool(detection.get("hard"))
    )


def perceptual_hashes(loop: Loop, arrays, detections: list[dict]) -> list[int | None]:
    """The near-duplicate hash of each decoded image the loop's policy may keep, None for the
    rest: computed while the caller holds the decoded arrays, so that it can drop them (and its
    decoding place) before the intake writes anything."""
    from worker.edge.inference import perceptual_hash

    policy = policy_for(loop)
    return [
        perceptual_hash(array) if _may_keep(policy, detection) else None
        for array, detection in zip(arrays, detections, strict=True)
    ]


@dataclass
class IntakeDecision:
    stored: bool = False
    queued: bool = False
    reason: str = ""
    sample_id: int | None = None
    outcome: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "stored": self.stored,
            "queued": self.queued,
            "intake": self.reason,
            "sample_id": self.sample_id,
        }


NOT_STORED_FOR_ROLE = "not stored: your role may not add samples"


def take_in(
    loop: Loop, items: list[IntakeItem], *, device: EdgeDevice | None, source: str, user=None
) -> list[IntakeDecision]:
    """Applies the loop's intake policy to each item, in one transaction with the policy locked
    (so two devices cannot both take the last slot of a budget)."""
    from worker.edge.inference import to_signed64

    policy = policy_for(loop)  # read with the loop by the API: no query
    # The common case of a healthy model: no lock, no write.
    if not any(_may_keep(policy, item.detection) for item in items):
        reason = "the loop's intake policy stores nothing"
        if policy.mode != IntakeMode.NOTHING:
            reason = "not hard"
        return [IntakeDecision(reason=reason) for _ in items]
    if device is None and user is not None and not user.has_perm("datasets.add_sample"):
        # A person predicts with loops.view_loop; only those who may add samples feed the
        # dataset (a viewer gets the answer, nothing is stored or counted against the budget).
        return [IntakeDecision(reason=NOT_STORED_FOR_ROLE) for _ in items]
    decisions = []
    with transaction.atomic():
        policy = IntakePolicy.objects.select_for_update().filter(loop=loop).first()
        if policy is None:
            policy = policy_for(loop)
        for item in items:
            decisions.append(_take_one(loop, policy, item, device, source, user, to_signed64))
    return decisions


def _take_one(loop, policy, item, device, source, user, to_signed64) -> IntakeDecision:
    hard = bool(item.detection.get("hard"))
    if policy.mode == IntakeMode.NOTHING:
        return IntakeDecision(reason="the loop's intake policy stores nothing")
    if hard:
        outcome = IntakeOutcome.QUEUED
    elif policy.mode == IntakeMode.SAMPLE and random.random() * 100 < policy.sample_percent:
        outcome = IntakeOutcome.STORED
    else:
        sampled = ", not sampled" if policy.mode == IntakeMode.SAMPLE else ""
        return IntakeDecision(reason=f"not hard{sampled}")
    if item.image_hash is None:  # the policy was changed to keep more during this request
        return IntakeDecision(reason="the intake policy changed while this image was answered")

    def record(result_outcome, sample_id=None):
        IntakeRecord.objects.create(
            loop=loop,
            device=device,
            outcome=result_outcome,
            image_hash=to_signed64(item.image_hash),
            hard=hard,
            hardness=float(item.detection.get("hardness") or 0.0),
            sample_id=sample_id,
        )

    near = _near_duplicate(loop, policy, item.image_hash)
    if near is not None:
        record(IntakeOutcome.DUPLICATE)
        return IntakeDecision(
            reason=f"a near-duplicate of an image stored {near} (perceptual hash)",
            outcome=IntakeOutcome.DUPLICATE,
        )
    if outcome == IntakeOutcome.QUEUED:
        over = _over_budget(loop, policy)
        if over:
            record(IntakeOutcome.OVER_BUDGET)
            return IntakeDecision(reason=over, outcome=IntakeOutcome.OVER_BUDGET)
    stored = datasets.store_sample(
        loop.dataset,
        item.data,
        original_name=storable_name(item.original_name),
        source=source,
        user=user,
        captured_at=item.captured_at,
        sha256=item.sha256,
    )
    if not stored.created:
        record(IntakeOutcome.DUPLICATE, stored.sample.pk)
        return IntakeDecision(
            reason=f"the same image is already sample {stored.sample.pk}",
            sample_id=stored.sample.pk,
            outcome=IntakeOutcome.DUPLICATE,
        )
    Sample.objects.filter(pk=stored.sample.pk).update(
        prediction={
            "version_id": item.version_id,
            "version": item.version_label,
            "boxes": item.detection.get("boxes", []),
            "miner": item.detection.get("miner", ""),
            "hardness": item.detection.get("hardness"),
            "hard": hard,
        },
        hardness_score=item.detection.get("hardness"),
        mined_by=str(item.detection.get("miner", ""))[:60],
        status=SampleStatus.QUEUED if hard else SampleStatus.UNLABELED,
    )
    record(outcome, stored.sample.pk)
    return IntakeDecision(
        stored=True,
        queued=hard,
        reason="hard: queued for labeling" if hard else "sampled: stored unlabeled",
        sample_id=stored.sample.pk,
        outcome=outcome,
    )


def _near_duplicate(loop: Loop, policy: IntakePolicy, image_hash: int) -> str | None:
    from worker.edge.inference import hash_distance

    if not policy.duplicate_window:
        return None
    recent = IntakeRecord.objects.filter(
        loop=loop, outcome__in=[IntakeOutcome.QUEUED, IntakeOutcome.STORED]
    ).order_by("-id")[: policy.duplicate_window]
    for earlier_hash, sample_id in recent.values_list("image_hash", "sample_id"):
        if hash_distance(earlier_hash, image_hash) <= policy.duplicate_distance:
            return f"as sample {sample_id}" if sample_id else "recently"
    return None


def _over_budget(loop: Loop, policy: IntakePolicy) -> str:
    now = timezone.now()
    queued = IntakeRecord.objects.filter(loop=loop, outcome=IntakeOutcome.QUEUED)
    if queued.filter(created_at__gte=now - timedelta(hours=1)).count() >= policy.hard_per_hour:
        return (
            f"the loop's budget of {policy.hard_per_hour} hard examples per hour is spent: "
            "counted, not queued"
        )
    if queued.filter(created_at__gte=now - timedelta(days=1)).count() >= policy.hard_per_day:
        return (
            f"the loop's budget of {policy.hard_per_day} hard examples per day is spent: "
            "counted, not queued"
        )
    return ""


def intake_counts(loop: Loop, since) -> dict[str, int]:
    rows = (
        IntakeRecord.objects.filter(loop=loop, created_at__gte=since)
        .values_list("outcome")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {outcome: 0 for outcome in IntakeOutcome.values}
    counts.update(dict(rows))  # counted in SQL: a busy day has thousands of records
    return counts


# --- Idempotent uploads ----------------------------------------------------------------------

# A request that finds its key claimed by a request still running waits this long for that one's
# answer (a retry racing its first attempt), then is told to retry later.
RECEIPT_WAIT_S = 5.0
RECEIPT_POLL_S = 0.05
# A claim without an answer this old belongs to a request that died (a killed process): the
# next request with that key takes it over. Far above how long an intake upload takes.
RECEIPT_STALE_S = 300
RECEIPT_RETRY_AFTER_S = 2


# UploadReceipt.key's length.
RECEIPT_KEY_MAX = 100


def receipt_key(raw: str | None) -> str:
    """The Idempotency-Key a request sent ('' for none). EdgeError for one that no receipt can
    hold as sent: longer than the column (it used to be cut to fit, so two keys sharing their
    first 100 characters were one, and the second upload was refused as another image's) or
    with control characters (a NUL was a 500 on PostgreSQL)."""
    key = (raw or "").strip()
    if len(key) > RECEIPT_KEY_MAX or _CONTROL.search(key):
        raise EdgeError(
            f"Idempotency-Key must be at most {RECEIPT_KEY_MAX} characters, without control "
            "characters (a UUID is a good key)."
        )
    return key


class ReceiptConflict(EdgeError):
    """The key cannot be used for this request: ``code`` 422 when it was used for another
    request, 409 (with ``retry_after``) while the first request with it is still running."""

    def __init__(self, message: str, *, code: int, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


def claim_receipt(token, key: str, *, loop: Loop, image_sha256: str):
    """Claims ``key`` for this upload before anything is stored: one request per key does the
    work, however many arrive at once (the unique (token, key) row decides, on PostgreSQL and
    SQLite alike).

    Returns ``(claim, None)`` when this request is the one to answer: it then calls
    ``keep_receipt(claim, answer)``, or ``release_receipt(claim)`` if it fails; ``(None,
    answer)`` for a retry of an answered upload (same loop, same image). Raises ReceiptConflict
    when the key was used with another loop or image, or its first request is still running
    after ``RECEIPT_WAIT_S``.
    """
    deadline = time.monotonic() + RECEIPT_WAIT_S
    attempts = 0
    while True:
        attempts += 1
        try:
            with transaction.atomic():  # its own transaction: other requests see it at once
                claim = UploadReceipt.objects.create(
                    token=token, key=key, loop=loop, image_sha256=image_sha256, response=None
                )
            return claim, None
        except IntegrityError:
            if attempts >= 5:  # the key keeps vanishing: something else refuses the row
                raise
        answer = _wait_for_answer(token, key, loop, image_sha256, deadline)
        if answer is not None:
            return None, answer
        # The first request failed and gave the key back (or died): claim it again.


def _wait_for_answer(token, key: str, loop: Loop, image_sha256: str, deadline: float):
    """The answer of the request holding the key, once it has one; None when the key was given
    back (or its claim went stale and was removed). Reads only: a waiting request takes no write
    lock (SQLite has one for the whole database)."""
    while True:
        earlier = UploadReceipt.objects.filter(token=token, key=key).first()
        if earlier is None:
            return None
        _check_same_upload(earlier, key, loop, image_sha256)
        if earlier.response is not None:
            return earlier.response
        if earlier.created_at < timezone.now() - timedelta(seconds=RECEIPT_STALE_S):
            UploadReceipt.objects.filter(pk=earlier.pk, response__isnull=True).delete()
            return None
        if time.monotonic() >= deadline:
            raise ReceiptConflict(
                f"A request with this Idempotency-Key ({key!r}) is in progress; retry in "
                f"{RECEIPT_RETRY_AFTER_S} s to get its answer.",
                code=409,
                retry_after=RECEIPT_RETRY_AFTER_S,
            )
        time.sleep(RECEIPT_POLL_S)


def _check_same_upload(earlier: UploadReceipt, key: str, loop: Loop, image_sha256: str) -> None:
    """A key names one upload: its loop and image (receipts kept before keys were bound to them
    have neither, and answer any retry)."""
    if earlier.loop_id is not None and earlier.loop_id != loop.pk:
        raise ReceiptConflict(
            f"Idempotency-Key {key!r} was already used for an upload to loop {earlier.loop_id}; "
            "use a new key for each upload.",
            code=422,
        )
    if earlier.image_sha256 and earlier.image_sha256 != image_sha256:
        raise ReceiptConflict(
            f"Idempotency-Key {key!r} was already used with another image; use a new key for "
            "each upload.",
            code=422,
        )


def keep_receipt(claim: UploadReceipt | None, response: dict) -> dict:
    """Records the answer of the request that holds ``claim``; retries get it from now on."""
    if claim is not None:
        UploadReceipt.objects.filter(pk=claim.pk, response__isnull=True).update(response=response)
    return response


def release_receipt(claim: UploadReceipt | None) -> None:
    """Gives a failed request's key back, so that a retry can succeed."""
    if claim is not None:
        UploadReceipt.objects.filter(pk=claim.pk, response__isnull=True).delete()


# Receipts older than this are removed by beat (`prune_receipts`): without it the table kept a
# row per agent upload for ever. An agent retries an upload within its queue's life; a retry
# that comes later still stores nothing twice: the image is a duplicate of its sample by then.
RECEIPT_KEEP_DAYS = 30


def prune_receipts(now=None) -> int:
    """Removes the receipts (answered or not) older than RECEIPT_KEEP_DAYS; how many."""
    before = (now or timezone.now()) - timedelta(days=RECEIPT_KEEP_DAYS)
    deleted, _ = UploadReceipt.objects.filter(created_at__lt=before).delete()
    return deleted


# --- Fleet bookkeeping -----------------------------------------------------------------------


_device_ids: dict[tuple[str, int], int] = {}


def device_for(token, loop: Loop) -> EdgeDevice:
    """The books of this token on this loop (ids are remembered per process: a row only goes
    away with its token or loop, and then updates of it simply change nothing)."""
    cache_key = (token.token_sha256, loop.pk)
    known = _device_ids.get(cache_key)
    if known is not None:
        return EdgeDevice(pk=known, token=token, loop=loop)
    device, _ = EdgeDevice.objects.get_or_create(token=token, loop=loop)
    if len(_device_ids) > 100_000:
        _device_ids.clear()
    _device_ids[cache_key] = device.pk
    return device


BOOKS_DIRTY = "edge-books-dirty"


def _books_key(member: str) -> str:
    return key("edge-books", member)


def record_activity(
    device: EdgeDevice, *, version_id=None, images: int = 0, hard: int = 0, health=None
) -> None:
    """Counts what a device sent and the version it uses, in Redis: no database write per
    predict request (`flush_device_books` moves the books into the database). An agent's
    ``health`` and any call while Redis is away go to the database directly."""
    now = timezone.now()
    if health is not None:
        EdgeDevice.objects.filter(pk=device.pk).update(health=without_nul(health))
    # The token's hash in the member name: if a device row id is ever reused, books kept for the
    # old device do not land on the new one.
    member = f"{device.pk}:{device.token.token_sha256[:16]}"
    fields = {"seen": now.timestamp()}
    if version_id is not None:
        fields["version"] = version_id
    try:
        pipe = get_redis().pipeline()
        pipe.hincrby(_books_key(member), "images", images)
        pipe.hincrby(_books_key(member), "hard", hard)
        pipe.hset(_books_key(member), mapping=fields)
        pipe.sadd(key(BOOKS_DIRTY), member)
        pipe.execute()
        return
    except redis.RedisError:
        logger.warning("device books written to the database: Redis is unreachable")
    changes = {
        "last_seen_at": now,
        "images_sent": F("images_sent") + images,
        "hard_sent": F("hard_sent") + hard,
    }
    if version_id is not None:
        changes["version_id"] = version_id
    EdgeDevice.objects.filter(pk=device.pk).update(**changes)


# Devices whose books one flush takes and writes at a time: one Redis transaction, two queries
# and one UPDATE per batch, however many devices sent requests.
FLUSH_BATCH = 500


def flush_device_books() -> int:
    """Moves the books that predict requests kept in Redis into the database; how many devices.

    Called before the books are shown and by beat every few seconds. The books of a batch of
    devices are taken and cleared in one Redis transaction, so a request counted meanwhile waits
    for the next flush; if the database write fails they are put back."""
    try:
        client = get_redis()
        members = sorted(raw.decode() for raw in client.smembers(key(BOOKS_DIRTY)))
    except redis.RedisError:
        logger.warning("device books not flushed: Redis is unreachable")
        return 0
    flushed = 0
    for start in range(0, len(members), FLUSH_BATCH):
        taken = _take_books(client, members[start : start + FLUSH_BATCH])
        if not taken:
            continue
        try:
            _apply_books(taken)
        except Exception:
            for member, books in taken.items():
                _restore_books(client, member, books)
            raise
        flushed += len(taken)
    return flushed


def _take_books(client, members: list[str]) -> dict[str, dict[str, str]]:
    """The books of ``members`` (those not empty), cleared from Redis in one transaction."""
    pipe = client.pipeline()
    for member in members:
        pipe.srem(key(BOOKS_DIRTY), member)
        pipe.hgetall(_books_key(member))
        pipe.delete(_books_key(member))
    replies = pipe.execute()[1::3]
    taken = {}
    for member, values in zip(members, replies, strict=True):
        if values:
            taken[member] = {name.decode(): value.decode() for name, value in values.items()}
    return taken


def _apply_books(taken: dict[str, dict[str, str]]) -> None:
    """Adds the books to the device rows in one UPDATE; a member whose row is gone, or now
    belongs to another token (a reused id), changes nothing."""
    members_by_id = {int(member.split(":", 1)[0]): member for member in taken}
    named = {int(books["version"]) for books in taken.values() if "version" in books}
    versions = set(ModelVersion.objects.filter(pk__in=named).values_list("pk", flat=True))
    rows = EdgeDevice.objects.filter(pk__in=members_by_id).values_list("pk", "token__token_sha256")
    devices = []
    for device_id, token_sha256 in rows:
        member = members_by_id[device_id]
        if not token_sha256.startswith(member.split(":", 1)[1]):
            continue
        books = taken[member]
        seen = Value(
            datetime.fromtimestamp(float(books["seen"]), tz=UTC), output_field=DateTimeField()
        )
        version_id = int(books["version"]) if "version" in books else None
        device = EdgeDevice(pk=device_id)
        device.images_sent = F("images_sent") + int(books.get("images", 0))
        device.hard_sent = F("hard_sent") + int(books.get("hard", 0))
        # An error may have been recorded (directly) after these requests: keep the later time.
        device.last_seen_at = Greatest(Coalesce("last_seen_at", seen), seen)
        # The last version a request or a heartbeat named, if it still exists.
        device.version_id = version_id if version_id in versions else F("version_id")
        devices.append(device)
    EdgeDevice.objects.bulk_update(
        devices, ["images_sent", "hard_sent", "last_seen_at", "version"], batch_size=FLUSH_BATCH
    )


def _restore_books(client, member: str, books: dict[str, str]) -> None:
    try:
        pipe = client.pipeline()
        pipe.hincrby(_books_key(member), "images", int(books.get("images", 0)))
        pipe.hincrby(_books_key(member), "hard", int(books.get("hard", 0)))
        pipe.hsetnx(_books_key(member), "seen", books["seen"])
        if "version" in books:
            pipe.hsetnx(_books_key(member), "version", books["version"])
        pipe.sadd(key(BOOKS_DIRTY), member)
        pipe.execute()
    except redis.RedisError:
        logger.error("device books of %s lost: %s", member, books)


def record_error(device: EdgeDevice, message: str) -> None:
    now = timezone.now()
    EdgeDevice.objects.filter(pk=device.pk).update(
        last_seen_at=now,
        errors=F("errors") + 1,
        last_error=without_nul(message)[:300],
        last_error_at=now,
    )


def silent_before(now=None):
    """A device last seen before this moment is silent (setting EDGE_SILENT_AFTER_S)."""
    from django.conf import settings

    return (now or timezone.now()) - timedelta(seconds=settings.EDGE_SILENT_AFTER_S)


def devices_by_loop(loop_ids, now=None) -> dict[int, list[EdgeDevice]]:
    """Each loop's devices (with token and version), silent ones flagged (``device.silent``):
    one query whatever the number of loops and devices."""
    flush_device_books()
    before = silent_before(now)
    devices = EdgeDevice.objects.filter(loop_id__in=list(loop_ids)).select_related(
        "token", "version"
    )
    by_loop: dict[int, list[EdgeDevice]] = {}
    for device in devices:
        device.silent = device.last_seen_at is None or device.last_seen_at < before
        by_loop.setdefault(device.loop_id, []).append(device)
    return by_loop


def fleet(loops) -> list[tuple[Loop, list[EdgeDevice]]]:
    """Each loop with its devices, silent ones flagged (``device.silent``)."""
    by_loop = devices_by_loop([loop.pk for loop in loops])
    return [(loop, by_loop.get(loop.pk, [])) for loop in loops]


SOURCE_DEVICE = SampleSource.DEVICE
