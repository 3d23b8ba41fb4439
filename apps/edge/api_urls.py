"""/api/v1/loops/<id>/...: the edge endpoints (each view authenticates itself)."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from apps.edge import api


def _open(view_class):
    return login_not_required(view_class.as_view())


urlpatterns = [
    path("loops/<int:loop_id>/predict/", _open(api.PredictView), name="api-edge-predict"),
    path("loops/<int:loop_id>/intake/", _open(api.IntakeUploadView), name="api-edge-intake"),
    path("loops/<int:loop_id>/heartbeat/", _open(api.HeartbeatView), name="api-edge-heartbeat"),
    path("loops/<int:loop_id>/model/", _open(api.ModelManifestView), name="api-edge-model"),
    path(
        "loops/<int:loop_id>/model/litert/",
        _open(api.ModelLiteRTView),
        name="api-edge-model-litert",
    ),
    path(
        "loops/<int:loop_id>/model/archive/",
        _open(api.ModelArchiveView),
        name="api-edge-model-archive",
    ),
    path(
        "loops/<int:loop_id>/intake-policy/",
        _open(api.IntakePolicyView),
        name="api-edge-intake-policy",
    ),
]
