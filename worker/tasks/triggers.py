"""Celery entry points of trigger rules: the periodic check (beat) and event-driven evaluation."""

from celery import shared_task

from apps.triggers.evaluator import evaluate_rules
from apps.triggers.models import TriggerRule


@shared_task(name="ilportal.check_trigger_rules", soft_time_limit=300, time_limit=330)
def check_trigger_rules() -> int:
    """Every rule of every loop, disabled ones too (they log "disabled" once)."""
    return evaluate_rules(TriggerRule.objects.values_list("pk", flat=True), cause="beat")


@shared_task(name="ilportal.evaluate_trigger_rules", soft_time_limit=120, time_limit=150)
def evaluate_trigger_rules(rule_ids: list[int], cause: str) -> int:
    return evaluate_rules(rule_ids, cause=cause)
