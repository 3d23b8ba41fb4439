"""REST API v1 for trigger rules: CRUD, fire, dry run, decision log (see docs/triggers.md).

The same `services.check_rule` validates here and in the form; errors name their field.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs.services import JobPermissionDenied
from apps.loops.models import Loop
from apps.triggers import dryrun, evaluator, services
from apps.triggers.models import (
    Comparison,
    Decision,
    IntervalUnit,
    RuleAction,
    RuleKind,
    TriggerRule,
)
from apps.triggers.status import distance_to_firing

MAX_LOG_PAGE = 500


class RuleInputSerializer(serializers.Serializer):
    """Types only; the rules of a valid rule are in services.check_rule."""

    name = serializers.CharField(max_length=120, allow_blank=True)
    kind = serializers.ChoiceField(choices=RuleKind.choices)
    action = serializers.ChoiceField(choices=RuleAction.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    every = serializers.IntegerField(required=False, allow_null=True)
    every_unit = serializers.ChoiceField(choices=IntervalUnit.choices, required=False)
    cron = serializers.CharField(max_length=120, required=False, allow_blank=True)
    window_start = serializers.TimeField(required=False, allow_null=True)
    window_end = serializers.TimeField(required=False, allow_null=True)
    time_zone = serializers.CharField(max_length=64, required=False)
    min_samples = serializers.IntegerField(required=False, allow_null=True)
    class_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    metric = serializers.CharField(max_length=12, required=False, allow_blank=True)
    comparison = serializers.ChoiceField(
        choices=Comparison.choices, required=False, allow_blank=True
    )
    threshold = serializers.FloatField(required=False, allow_null=True)
    min_fresh_samples = serializers.IntegerField(required=False, allow_null=True)
    cooldown_minutes = serializers.IntegerField(required=False)


class RuleSerializer(serializers.ModelSerializer):
    window_start = serializers.TimeField(format="%H:%M", allow_null=True)
    window_end = serializers.TimeField(format="%H:%M", allow_null=True)
    distance_to_firing = serializers.SerializerMethodField()

    class Meta:
        model = TriggerRule
        fields = [
            "id",
            "loop",
            *services.EDITABLE_FIELDS,
            "fire_count",
            "last_fired_at",
            "last_evaluated_at",
            "last_verdict",
            "last_reason",
            "last_message",
            "last_inputs",
            "idle_evaluations",
            "distance_to_firing",
            "created_at",
            "updated_at",
        ]

    def get_distance_to_firing(self, rule) -> str:
        return distance_to_firing(rule)


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Decision
        fields = [
            "id",
            "rule",
            "at",
            "cause",
            "verdict",
            "reason",
            "message",
            "inputs",
            "job",
            "idle_before",
        ]


class DryRunSerializer(RuleInputSerializer):
    days = serializers.IntegerField(min_value=1, max_value=dryrun.MAX_DAYS, default=7)


def _checked(loop: Loop, data: dict) -> dict:
    try:
        return services.check_rule(loop, data)
    except services.RuleInvalid as exc:
        raise ValidationError({field: [message] for field, message in exc.errors.items()}) from exc


def _rule(rule_id: int) -> TriggerRule:
    return get_object_or_404(TriggerRule.objects.select_related("loop__dataset"), pk=rule_id)


class LoopRulesView(APIView):
    required_permissions = {"GET": "triggers.view_triggerrule", "POST": "triggers.add_triggerrule"}

    @extend_schema(responses=RuleSerializer(many=True))
    def get(self, request, loop_id: int):
        loop = get_object_or_404(Loop, pk=loop_id)
        rules = loop.trigger_rules.select_related("loop__dataset")
        return Response(RuleSerializer(rules, many=True).data)

    @extend_schema(request=RuleInputSerializer, responses={201: RuleSerializer})
    def post(self, request, loop_id: int):
        loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
        data = RuleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            rule = services.create_rule(loop, data.validated_data, user=request.user)
        except services.RuleInvalid as exc:
            raise ValidationError({f: [m] for f, m in exc.errors.items()}) from exc
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    required_permissions = {
        "GET": "triggers.view_triggerrule",
        "PATCH": "triggers.change_triggerrule",
        "DELETE": "triggers.delete_triggerrule",
    }

    @extend_schema(responses=RuleSerializer)
    def get(self, request, rule_id: int):
        return Response(RuleSerializer(_rule(rule_id)).data)

    @extend_schema(request=RuleInputSerializer, responses=RuleSerializer)
    def patch(self, request, rule_id: int):
        rule = _rule(rule_id)
        data = RuleInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            rule = services.update_rule(rule, data.validated_data)
        except services.RuleInvalid as exc:
            raise ValidationError({f: [m] for f, m in exc.errors.items()}) from exc
        return Response(RuleSerializer(rule).data)

    @extend_schema(responses={204: None})
    def delete(self, request, rule_id: int):
        services.delete_rule(_rule(rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleFireView(APIView):
    required_permissions = {"POST": "triggers.fire_triggerrule"}

    @extend_schema(request=None, responses={201: DecisionSerializer, 409: DecisionSerializer})
    def post(self, request, rule_id: int):
        rule = _rule(rule_id)
        try:
            decision = evaluator.fire_now(rule.pk, user=request.user)
        except JobPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        fired = decision.verdict == "fired"
        return Response(
            DecisionSerializer(decision).data,
            status=status.HTTP_201_CREATED if fired else status.HTTP_409_CONFLICT,
        )


class RuleDecisionsView(APIView):
    required_permissions = {"GET": "triggers.view_decision"}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LOG_PAGE},
                description=f"1 to {MAX_LOG_PAGE}, default 50",
            ),
            OpenApiParameter(
                "before",
                {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                description="only decisions with a smaller id",
            ),
        ],
        responses=inline_serializer(
            "DecisionPage",
            {
                "results": DecisionSerializer(many=True),
                "idle_evaluations_since_last": serializers.IntegerField(),
                "next_before": serializers.IntegerField(allow_null=True),
            },
        ),
    )
    def get(self, request, rule_id: int):
        rule = _rule(rule_id)
        try:
            limit = int(request.query_params.get("limit", 50))
            before = request.query_params.get("before")
            before = int(before) if before else None
        except ValueError:
            raise ValidationError({"limit": ["limit and before are whole numbers."]}) from None
        if not 1 <= limit <= MAX_LOG_PAGE:
            raise ValidationError({"limit": [f"limit must be from 1 to {MAX_LOG_PAGE}."]})
        if before is not None and not 1 <= before <= 2**63 - 1:
            raise ValidationError({"before": ["before is a decision id (1 or more)."]})
        decisions = rule.decisions.all()
        if before:
            decisions = decisions.filter(pk__lt=before)
        page = list(decisions.order_by("-id")[:limit])
        return Response(
            {
                "results": DecisionSerializer(page, many=True).data,
                "idle_evaluations_since_last": rule.idle_evaluations,
                "next_before": page[-1].pk if len(page) == limit else None,
            }
        )


class DryRunView(APIView):
    required_permissions = {"POST": "triggers.view_triggerrule"}

    @extend_schema(
        request=DryRunSerializer,
        responses=inline_serializer(
            "DryRunResult",
            {
                "from": serializers.DateTimeField(),
                "to": serializers.DateTimeField(),
                "events_replayed": serializers.IntegerField(),
                "would_fire": serializers.IntegerField(),
                "firings": serializers.ListField(child=serializers.DictField()),
                "held_back": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def post(self, request, loop_id: int):
        loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
        data = DryRunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        days = values.pop("days")
        draft = TriggerRule(loop=loop, **_checked(loop, values))
        return Response(dryrun.replay(draft, days=days).as_json())
