from django.urls import path

from apps.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("start/<str:kind>/", views.start, name="start"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/state/", views.job_state, name="state"),
    path("<int:job_id>/cancel/", views.cancel, name="cancel"),
]
