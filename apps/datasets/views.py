import tempfile

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from apps.dashboard.confirm import confirm_first
from apps.datasets import services
from apps.datasets.counts import cached_dataset_counts
from apps.datasets.exporting import EXPORTERS, write_export
from apps.datasets.forms import EXPORT_FORMATS, DatasetForm, SampleFilterForm, UploadForm
from apps.datasets.models import Dataset, Sample
from apps.datasets.pagination import keyset_page
from apps.datasets.thumbnails import ensure_thumbnail
from apps.jobs import events
from apps.jobs.models import Job


@permission_required("datasets.view_dataset", raise_exception=True)
def dataset_list(request):
    form = DatasetForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm("datasets.add_dataset"):
            raise Http404  # the form is not offered to this user
        if form.is_valid():
            try:
                dataset = services.create_dataset(
                    name=form.cleaned_data["name"],
                    class_names=form.cleaned_data["class_names"],
                    description=form.cleaned_data["description"],
                    created_by=request.user,
                )
            except services.DatasetError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Dataset {dataset.name} created.")
                return redirect("datasets:detail", dataset_id=dataset.pk)
    datasets = services.datasets_with_sample_counts().order_by("name")
    return render(request, "datasets/dataset_list.html", {"datasets": datasets, "form": form})


def _colour(class_name: str, class_names: list[str]) -> int:
    """One of the 8 box colours of portal.css, by the class's position."""
    return class_names.index(class_name) % 8 if class_name in class_names else 7


def _boxes_for_grid(samples: list[Sample], class_names: list[str]) -> None:
    """Attaches the current boxes (one query for the page), as percentages of the image."""
    boxes = services.boxes_by_annotation(s.current_annotation_id for s in samples)
    for sample in samples:
        sample.grid_boxes = [
            {
                "class_name": box.class_name,
                "colour": _colour(box.class_name, class_names),
                "x": box.x1,
                "y": box.y1,
                "w": box.x2 - box.x1,
                "h": box.y2 - box.y1,
            }
            for box in boxes.get(sample.current_annotation_id, [])
        ]


@permission_required("datasets.view_dataset", raise_exception=True)
def dataset_detail(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    filters = services.SampleFilters.from_query(request.GET)
    filter_form = SampleFilterForm(request.GET or None, class_names=dataset.class_names)
    counts = cached_dataset_counts(dataset)
    samples = services.filtered_samples(dataset.pk, filters)
    if filters.class_name and not counts.boxes_by_class.get(filters.class_name):
        # No current box of this class (the counts say so): no sample matches, and asking the
        # database would probe every sample of the dataset for one.
        samples = samples.none()
    page = keyset_page(
        samples,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=settings.DATASET_PAGE_SIZE,
    )
    _boxes_for_grid(page.items, dataset.class_names)
    class_rows = [
        (name, n, _colour(name, dataset.class_names)) for name, n in counts.boxes_by_class.items()
    ]
    return render(
        request,
        "datasets/dataset_detail.html",
        {
            "dataset": dataset,
            "counts": counts,
            "class_rows": class_rows,
            "filter_form": filter_form,
            "filter_query": filters.as_query(),
            "page": page,
            "export_formats": EXPORT_FORMATS,
        },
    )


@permission_required("datasets.add_sample", raise_exception=True)
def upload(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    wants_json = "application/json" in request.headers.get("Accept", "")
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid():
            job = services.start_import(
                dataset,
                [(f.name, f) for f in form.cleaned_data["files"]],
                user=request.user,
                format=form.cleaned_data["format"],
                unknown_classes=form.cleaned_data["unknown_classes"],
            )
            if wants_json:
                return JsonResponse(
                    {"job": events.job_state(job), "url": reverse("datasets:import", args=[job.pk])}
                )
            return redirect("datasets:import", job_id=job.pk)
        if wants_json:
            errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
            return JsonResponse({"errors": errors}, status=400)
    return render(request, "datasets/upload.html", {"dataset": dataset, "form": form})


@permission_required("datasets.view_dataset", raise_exception=True)
def import_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id, kind="dataset_import")
    dataset = Dataset.objects.filter(pk=job.params.get("dataset_id")).first()
    return render(
        request,
        "datasets/import_detail.html",
        {"job": job, "dataset": dataset, "state": events.job_state(job)},
    )


@require_POST
@permission_required("datasets.delete_dataset", raise_exception=True)
def delete_dataset(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    asked = confirm_first(
        request,
        f"Delete dataset {dataset.name} with all its samples, labels and image files?",
        f"Delete {dataset.name}",
        danger=True,
    )
    if asked:
        return asked
    try:
        services.delete_dataset(dataset.pk)
    except services.DatasetError as exc:
        messages.error(request, str(exc))
        return redirect("datasets:detail", dataset_id=dataset.pk)
    messages.success(request, f"Dataset {dataset.name} and its files were deleted.")
    return redirect("datasets:list")


@permission_required("datasets.view_dataset", raise_exception=True)
def export(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    fmt = request.GET.get("format", "coco")
    if fmt not in EXPORTERS:
        return HttpResponseBadRequest(f"Unknown export format {fmt!r}: use coco, voc or yolo.")
    samples = services.filtered_samples(dataset.pk, services.SampleFilters.from_query(request.GET))
    # Spooled: small exports stay in memory, large ones go to a temporary file, never a response
    # body held whole in memory.
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 (the response closes it)
    write_export(dataset, samples, fmt, out)
    out.seek(0)
    return FileResponse(
        out,
        as_attachment=True,
        filename=f"{slugify(dataset.name)}-{fmt}.zip",
        content_type="application/zip",
    )


def _storage_response(name: str, content_type: str | None = None) -> FileResponse:
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"  # content-addressed: never changes
    return response


@permission_required("datasets.view_sample", raise_exception=True)
def sample_thumbnail(request, sample_id: int):
    sample = get_object_or_404(Sample, pk=sample_id)
    return _storage_response(ensure_thumbnail(sample), "image/jpeg")


@permission_required("datasets.view_sample", raise_exception=True)
def sample_image(request, sample_id: int):
    sample = get_object_or_404(Sample, pk=sample_id)
    return _storage_response(sample.image.name)
