"""/api/v1/loops/: every view authenticates itself (session or device token), so the
login-required middleware lets these paths through."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from apps.loops import api


def _open(view_class):
    return login_not_required(view_class.as_view())


VERSION = "loops/<int:loop_id>/versions/<int:number>/"

urlpatterns = [
    path("loops/", _open(api.LoopListView), name="api-loops"),
    path("loops/<int:loop_id>/", _open(api.LoopDetailView), name="api-loop"),
    path("loops/<int:loop_id>/train/", _open(api.LoopTrainView), name="api-loop-train"),
    path("loops/<int:loop_id>/versions/", _open(api.VersionListView), name="api-versions"),
    path(VERSION, _open(api.VersionDetailView), name="api-version"),
    path(VERSION + "evaluate/", _open(api.VersionEvaluateView), name="api-version-evaluate"),
    path(VERSION + "deploy/", _open(api.VersionDeployView), name="api-version-deploy"),
    path(VERSION + "rollback/", _open(api.VersionRollbackView), name="api-version-rollback"),
    path(VERSION + "force/", _open(api.VersionForceView), name="api-version-force"),
    path("loops/<int:loop_id>/evaluations/", _open(api.EvaluationListView), name="api-evaluations"),
    path("loops/<int:loop_id>/deployments/", _open(api.DeploymentListView), name="api-deployments"),
]
