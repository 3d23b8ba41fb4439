"""/api/v1/: every view authenticates itself (session or device token), so the login-required
middleware lets these paths through."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from apps.datasets import api


def _open(view_class):
    return login_not_required(view_class.as_view())


urlpatterns = [
    path("datasets/", _open(api.DatasetListView), name="api-datasets"),
    path("datasets/<int:dataset_id>/", _open(api.DatasetDetailView), name="api-dataset"),
    path("datasets/<int:dataset_id>/samples/", _open(api.DatasetSamplesView), name="api-samples"),
    path("datasets/<int:dataset_id>/imports/", _open(api.DatasetImportView), name="api-imports"),
    path("datasets/<int:dataset_id>/exports/", _open(api.DatasetExportView), name="api-exports"),
    path("exports/<int:job_id>/", _open(api.ExportDetailView), name="api-export"),
    path(
        "exports/<int:job_id>/download/",
        _open(api.ExportDownloadView),
        name="api-export-download",
    ),
    path("imports/<int:job_id>/report/", _open(api.ImportReportView), name="api-import-report"),
    path("samples/<int:sample_id>/", _open(api.SampleDetailView), name="api-sample"),
    path(
        "samples/<int:sample_id>/annotations/",
        _open(api.SampleAnnotationsView),
        name="api-annotations",
    ),
    path("schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
]
