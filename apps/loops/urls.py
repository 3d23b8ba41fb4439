from django.urls import path

from apps.loops import benchmark_views, views

app_name = "loops"
urlpatterns = [
    path("", views.loop_list, name="list"),
    path("new/", views.loop_create, name="create"),
    path("<int:loop_id>/", views.loop_detail, name="detail"),
    path("<int:loop_id>/settings/", views.loop_settings, name="settings"),
    path("<int:loop_id>/train/", views.train, name="train"),
    path("<int:loop_id>/compare/", views.compare, name="compare"),
    path("<int:loop_id>/benchmarks/", benchmark_views.benchmark_list, name="benchmarks"),
    path(
        "<int:loop_id>/benchmarks/<int:job_id>/",
        benchmark_views.benchmark_detail,
        name="benchmark",
    ),
    path(
        "<int:loop_id>/benchmarks/<int:job_id>/csv/",
        benchmark_views.benchmark_csv,
        name="benchmark_csv",
    ),
    path(
        "<int:loop_id>/benchmarks/<int:job_id>/use/",
        benchmark_views.use_miner,
        name="benchmark_use",
    ),
    path("<int:loop_id>/versions/add/", views.add_version, name="add_version"),
    path("<int:loop_id>/v<int:number>/", views.version_detail, name="version"),
    path("<int:loop_id>/v<int:number>/evaluate/", views.evaluate, name="evaluate"),
    path("<int:loop_id>/v<int:number>/deploy/", views.deploy, name="deploy"),
    path("<int:loop_id>/v<int:number>/rollback/", views.rollback, name="rollback"),
    path("<int:loop_id>/v<int:number>/force/", views.force_deploy, name="force"),
    path("<int:loop_id>/v<int:number>/delete/", views.delete_version, name="delete_version"),
    path(
        "<int:loop_id>/v<int:number>/download/<str:what>/",
        views.version_download,
        name="download",
    ),
]
