from django.urls import path

from apps.datasets import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("<int:dataset_id>/", views.dataset_detail, name="detail"),
    path("<int:dataset_id>/upload/", views.upload, name="upload"),
    path("<int:dataset_id>/export/", views.export, name="export"),
    path("exports/<int:job_id>/", views.export_detail, name="export-detail"),
    path("exports/<int:job_id>/download/", views.export_download, name="export-download"),
    path("<int:dataset_id>/delete/", views.delete_dataset, name="delete"),
    path("imports/<int:job_id>/", views.import_detail, name="import"),
    path("imports/<int:job_id>/report.csv", views.import_report, name="import-report"),
    path("samples/<int:sample_id>/thumbnail/", views.sample_thumbnail, name="thumbnail"),
    path("samples/<int:sample_id>/image/", views.sample_image, name="image"),
]
