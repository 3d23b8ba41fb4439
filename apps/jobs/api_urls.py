"""/api/v1/jobs/: every view authenticates itself (session or device token)."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from apps.jobs import api

urlpatterns = [
    path("jobs/", login_not_required(api.JobListView.as_view()), name="api-jobs"),
    path("jobs/<int:job_id>/", login_not_required(api.JobDetailView.as_view()), name="api-job"),
    path(
        "jobs/<int:job_id>/cancel/",
        login_not_required(api.JobCancelView.as_view()),
        name="api-job-cancel",
    ),
]
