"""Pages (queue, editor, review, sample) and the small JSON endpoints the editor calls.

Labels themselves are saved through the REST API (POST /api/v1/samples/<id>/annotations/).
"""

import json
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import permission_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.datasets import services as datasets
from apps.datasets.models import Dataset, Sample, SampleSource, Split
from apps.labeling import history, services
from apps.labeling.models import Claim, LabelReview, ReviewState, Skip, SkipReason
from apps.loops.models import Loop

LABEL = "datasets.add_annotation"
REVIEW = "labeling.review_labels"
QUEUE_PAGE_SIZE = 50
MAX_BATCH = 20


def json_permission(permission: str):
    """Like permission_required, but a refusal is JSON with a reason (these are fetched)."""

    def decorate(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            if not request.user.has_perm(permission):
                return JsonResponse({"detail": "Your role may not do this."}, status=403)
            return view(request, *args, **kwargs)

        return checked

    return decorate


class BadBody(Exception):
    pass


def _json_body(request) -> dict:
    """The request's JSON object ({} for an empty body); BadBody for anything else."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise BadBody("The body is not JSON (or is nested too deeply).") from exc
    if not isinstance(body, dict):
        raise BadBody("The body must be a JSON object.")
    return body


# --- Queue ---------------------------------------------------------------------------------


@permission_required("datasets.view_sample", raise_exception=True)
def queue(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    filters = services.QueueFilters.from_query(request.GET)
    page = services.queue_page(
        dataset.pk, filters, after=request.GET.get("after", ""), size=QUEUE_PAGE_SIZE
    )
    claims = services.live_claims(s.id for s in page.items)
    for sample in page.items:
        sample.claim = claims.get(sample.id)
    loops = list(Loop.objects.filter(dataset=dataset).only("id", "name"))
    return render(
        request,
        "labeling/queue.html",
        {
            "dataset": dataset,
            "filters": filters,
            "filter_query": filters.as_query(),
            "filter_qs": urlencode(filters.as_query()),
            "page": page,
            "counters": services.queue_counters(dataset.pk, request.user),
            "orders": services.ORDERS,
            "device_filter": services.device_filter_available(),
            "splits": Split.values,
            "sources": SampleSource.values,
            "loops": loops,
            "reviewing_loops": set(services.reviewing_loops(dataset.pk)),
            "claimers": labeler_choices(dataset.pk)
            if request.user.has_perm("labeling.delete_claim")
            else [],
            "claim_count": Claim.objects.filter(
                dataset=dataset, expires_at__gt=timezone.now()
            ).count(),
        },
    )


@permission_required("loops.view_loop", raise_exception=True)
def loop_queue(request, loop_id: int):
    loop = get_object_or_404(Loop, pk=loop_id)
    return redirect("labeling:queue", dataset_id=loop.dataset_id)


MAX_ROW_ID = 2**63 - 1  # the largest id a database integer column holds


def _row_id(text: str) -> int | None:
    """A posted id, or None for anything else (not ASCII digits, or too large for the database)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ROW_ID:
        return None
    return int(text)


@permission_required("datasets.view_dataset", raise_exception=True)
def home(request):
    datasets = Dataset.objects.order_by("name")
    return render(request, "labeling/home.html", {"datasets": datasets})


@require_POST
@permission_required("labeling.delete_claim", raise_exception=True)
def release_claims(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    user_id = request.POST.get("user") or ""
    if user_id and _row_id(user_id) is None:
        messages.error(request, "Choose whose claims to release.")
        return redirect("labeling:queue", dataset_id=dataset.pk)
    released = services.release_claims(dataset.pk, user_id=_row_id(user_id))
    messages.success(request, f"Released {released} claim(s).")
    return redirect("labeling:queue", dataset_id=dataset.pk)


@require_POST
@permission_required("loops.change_loop", raise_exception=True)
def loop_review_setting(request, loop_id: int):
    loop = get_object_or_404(Loop, pk=loop_id)
    enabled = request.POST.get("review_labels") == "on"
    services.set_review(loop.pk, enabled)
    messages.success(
        request, f"{loop.name}: labels {'now wait for review' if enabled else 'count at once'}."
    )
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("labeling:queue", args=[loop.dataset_id])
    return redirect(back)


# --- Editor --------------------------------------------------------------------------------


@permission_required(LABEL, raise_exception=True)
def editor(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    filters = services.QueueFilters.from_query(request.GET)
    config = {
        "dataset": dataset.pk,
        "classes": dataset.class_names,
        "filters": filters.as_query(),
        "sample": request.GET.get("sample", ""),
        "claimUrl": reverse("labeling:claim", args=[dataset.pk]),
        "skipUrl": reverse("labeling:skip", args=[0]),
        "leaveUrl": reverse("labeling:leave"),
        "saveUrl": reverse("api-annotations", args=[0]),
        "queueUrl": reverse("labeling:queue", args=[dataset.pk]),
        "skipReasons": [[value, label] for value, label in SkipReason.choices],
    }
    return render(request, "labeling/editor.html", {"dataset": dataset, "config": config})


@require_POST
@json_permission(LABEL)
def claim(request, dataset_id: int):
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return JsonResponse({"detail": f"There is no dataset {dataset_id}."}, status=404)
    try:
        body = _json_body(request)
    except BadBody as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    filters = body.get("filters") or {}
    if not isinstance(filters, dict):
        return JsonResponse({"detail": "filters must be an object."}, status=400)
    filters = services.QueueFilters.from_query(filters)
    try:
        size = max(1, min(int(body.get("size", 3)), MAX_BATCH))
    except (TypeError, ValueError):
        return JsonResponse({"detail": "size must be an integer."}, status=400)
    first, warning = [], ""
    if body.get("sample"):
        try:
            first = [services.claim_sample(int(body["sample"]), request.user, dataset.pk)]
        except (TypeError, ValueError):
            return JsonResponse({"detail": "sample must be an id."}, status=400)
        except Sample.DoesNotExist:
            return JsonResponse({"detail": "No such sample in this dataset."}, status=404)
        except services.ClaimedByOther as exc:
            warning = str(exc)  # the queue's next images instead
    ids = services.claim_batch(dataset.pk, request.user, filters, size=size)
    ids = first + [i for i in ids if i not in first]
    counters = services.queue_counters(dataset.pk, request.user)
    return JsonResponse(
        {
            "samples": services.editor_payloads(ids),
            "counters": counters.__dict__,
            "review": services.dataset_reviews(dataset.pk),
            "warning": warning,
        }
    )


@require_POST
@json_permission(LABEL)
def skip(request, sample_id: int):
    if not Sample.objects.filter(pk=sample_id).exists():
        return JsonResponse({"detail": f"There is no sample {sample_id}."}, status=404)
    try:
        body = _json_body(request)
    except BadBody as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    # The revision the editor showed (0: none), required: a skip from a view that did not see a
    # newer label would take that label out of training.
    base_revision = body.get("base_revision")
    if not isinstance(base_revision, int) or isinstance(base_revision, bool) or base_revision < 0:
        return JsonResponse(
            {"detail": "base_revision (the revision you saw, 0 for none) must be a whole number."},
            status=400,
        )
    try:
        services.skip_sample(
            sample_id,
            user=request.user,
            reason=str(body.get("reason", "")),
            note=str(body.get("note", "")),
            base_revision=base_revision,
        )
    except services.ClaimedByOther as exc:
        return JsonResponse({"detail": str(exc), "code": "claimed_by_other"}, status=exc.status)
    except datasets.StaleRevision as exc:
        return JsonResponse({"detail": str(exc), "code": "stale_revision"}, status=409)
    except services.LabelingError as exc:
        return JsonResponse({"detail": str(exc)}, status=exc.status)
    return JsonResponse({"skipped": sample_id})


@require_POST
@json_permission(LABEL)
def leave(request):
    """The editor's page is closing (navigator.sendBeacon, form-encoded with the CSRF token):
    give back the samples it held and had not saved."""
    ids = [_row_id(i) for i in request.POST.get("samples", "").split(",")]
    ids = [i for i in ids if i is not None]  # not an id the database can hold: ignored
    return JsonResponse({"released": services.release_my_claims(request.user, ids[:100])})


# --- Review --------------------------------------------------------------------------------


@permission_required(REVIEW, raise_exception=True)
def review_list(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    reviews = list(
        LabelReview.objects.filter(dataset=dataset, state=ReviewState.PENDING)
        .select_related("labeler", "sample", "annotation")
        .order_by("id")[:30]
    )
    boxes = services.datasets.boxes_by_annotation(r.annotation_id for r in reviews)
    for review in reviews:
        review.boxes = history.grid_boxes(boxes.get(review.annotation_id, []), dataset.class_names)
    return render(request, "labeling/review.html", {"dataset": dataset, "reviews": reviews})


@require_POST
@permission_required(REVIEW, raise_exception=True)
def review_decide(request, review_id: int):
    review = get_object_or_404(LabelReview, pk=review_id)
    decision = request.POST.get("decision")
    comment = request.POST.get("comment", "")
    try:
        if decision == "accept":
            services.accept_review(review.pk, reviewer=request.user, comment=comment)
            messages.success(request, f"Accepted the label of sample {review.sample_id}.")
        elif decision == "reject":
            services.reject_review(review.pk, reviewer=request.user, comment=comment)
            messages.success(request, f"Sample {review.sample_id} went back to its labeler.")
        else:
            messages.error(request, "Choose accept or reject.")
    except services.LabelingError as exc:
        messages.error(request, str(exc))
    return redirect("labeling:review", dataset_id=review.dataset_id)


# --- Sample page ---------------------------------------------------------------------------


@permission_required("datasets.view_sample", raise_exception=True)
def sample_page(request, sample_id: int):
    sample = get_object_or_404(Sample.objects.select_related("dataset"), pk=sample_id)
    class_names = sample.dataset.class_names
    revisions = history.revision_history(sample)
    current = next((r for r in revisions if r.is_current), None)
    return render(
        request,
        "labeling/sample.html",
        {
            "sample": sample,
            "dataset": sample.dataset,
            "current_boxes": current.grid_boxes if current else [],
            "revisions": revisions[::-1],
            "prediction": services.normalized_prediction(sample.prediction, class_names),
            "predicted_by": sample.prediction.get("version", "")
            if isinstance(sample.prediction, dict)
            else "",
            "trained_on": history.versions_trained_on(sample.pk),
            "claim": services.live_claims([sample.pk]).get(sample.pk),
            "skips": Skip.objects.filter(sample=sample).select_related("user")[:5],
        },
    )


@require_POST
@permission_required("datasets.change_sample", raise_exception=True)
def queue_this(request, sample_id: int):
    sample = get_object_or_404(Sample, pk=sample_id)
    services.queue_sample(sample.pk)
    messages.success(request, f"Sample {sample.pk} is queued for labeling.")
    return redirect("labeling:sample", sample_id=sample.pk)


def labeler_choices(dataset_id: int):
    """The labelers holding claims in a dataset (for the admin's release form)."""
    user_ids = Claim.objects.filter(dataset_id=dataset_id).values("user_id")
    return get_user_model().objects.filter(pk__in=user_ids).order_by("username")
