from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.body_gate import accepts_large_body
from apps.dashboard.confirm import confirm_first
from apps.datasets import exporting, services
from apps.datasets.counts import cached_dataset_counts
from apps.datasets.forms import EXPORT_FORMATS, DatasetForm, SampleFilterForm, UploadForm
from apps.datasets.import_report import report_storage_name
from apps.datasets.models import Dataset, Sample
from apps.datasets.pagination import keyset_page
from apps.datasets.thumbnails import ensure_thumbnail
from apps.jobs import events
from apps.jobs.models import Job
from apps.jobs.services import JobError, JobPermissionDenied
from ilportal.protected_files import stored_file_response


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


@accepts_large_body("datasets.add_sample", "DATASET_MAX_UPLOAD_BYTES")
@permission_required("datasets.add_sample", raise_exception=True)
def upload(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    wants_json = "application/json" in request.headers.get("Accept", "")
    form = UploadForm(
        request.POST or None,
        request.FILES or None,
        may_add_classes=request.user.has_perm(services.ADD_CLASSES_PERMISSION),
    )
    if request.method == "POST":
        if form.is_valid():
            job = services.start_import(
                dataset,
                [(f.name, f) for f in form.cleaned_data["files"]],
                user=request.user,
                format=form.cleaned_data["format"],
                unknown_classes=form.cleaned_data["unknown_classes"],
                listed_without_labels=form.cleaned_data["listed_without_labels"],
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


@permission_required("datasets.view_dataset", raise_exception=True)
def import_report(request, job_id: int):
    """The full report of an import as CSV (the job row keeps only its first lines)."""
    return import_report_response(get_object_or_404(Job, pk=job_id, kind="dataset_import"))


def import_report_response(job) -> HttpResponse:
    """The import's full report, streamed from storage (the caller checked the permission)."""
    name = report_storage_name(job.pk)
    if not default_storage.exists(name):
        raise Http404("This import has no saved report (it has not finished, or it failed).")
    return stored_file_response(
        name, as_attachment=True, filename=f"import-{job.pk}-report.csv", content_type="text/csv"
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


@require_POST
@permission_required("datasets.view_dataset", raise_exception=True)
def export(request, dataset_id: int):
    """Starts an export job of the dataset (or its filtered part) and shows its page."""
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    try:
        job = exporting.start_export(
            dataset, request.POST.get("format", "coco"), request.POST, user=request.user
        )
    except JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    except (exporting.ExportError, JobError) as exc:  # JobError: the same export just finished
        messages.error(request, str(exc))
        return redirect("datasets:detail", dataset_id=dataset.pk)
    return redirect("datasets:export-detail", job_id=job.pk)


@permission_required("datasets.view_dataset", raise_exception=True)
def export_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id, kind="dataset_export")
    dataset = Dataset.objects.filter(pk=job.params.get("dataset_id")).first()
    return render(
        request,
        "datasets/export_detail.html",
        {
            "job": job,
            "dataset": dataset,
            "state": events.job_state(job),
            "format_label": exporting.EXPORT_FORMAT_LABELS.get(job.params.get("format"), ""),
            "keep_hours": settings.DATASET_EXPORT_KEEP_HOURS,
        },
    )


@permission_required("datasets.view_dataset", raise_exception=True)
def export_download(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id, kind="dataset_export")
    return export_file_response(job)


def export_file_response(job) -> HttpResponse:
    """The finished export's zip, streamed from storage (the caller checked the permission)."""
    name = exporting.export_storage_name(job.pk)
    if job.status != "succeeded" or not default_storage.exists(name):
        raise Http404("This export has no file (it has not finished, or it failed).")
    return stored_file_response(
        name,
        as_attachment=True,
        filename=exporting.download_file_name(job),
        content_type="application/zip",
    )


def _storage_response(name: str, content_type: str | None = None):
    # A stored file is never rewritten under its name (each write has a name of its own).
    return stored_file_response(name, content_type=content_type, immutable=True)


@permission_required("datasets.view_sample", raise_exception=True)
def sample_thumbnail(request, sample_id: int):
    sample = get_object_or_404(Sample, pk=sample_id)
    return _storage_response(ensure_thumbnail(sample), "image/jpeg")


@permission_required("datasets.view_sample", raise_exception=True)
def sample_image(request, sample_id: int):
    sample = get_object_or_404(Sample, pk=sample_id)
    return _storage_response(sample.image.name)
