"""/api/v1/ paths of trigger rules (mounted next to the datasets API)."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from apps.triggers import api


def _open(view_class):
    return login_not_required(view_class.as_view())


urlpatterns = [
    path("loops/<int:loop_id>/trigger-rules/", _open(api.LoopRulesView), name="api-rules"),
    path(
        "loops/<int:loop_id>/trigger-rules/dry-run/",
        _open(api.DryRunView),
        name="api-rules-dry-run",
    ),
    path("trigger-rules/<int:rule_id>/", _open(api.RuleDetailView), name="api-rule"),
    path("trigger-rules/<int:rule_id>/fire/", _open(api.RuleFireView), name="api-rule-fire"),
    path(
        "trigger-rules/<int:rule_id>/decisions/",
        _open(api.RuleDecisionsView),
        name="api-rule-decisions",
    ),
]
