"""The seams the rules listen to, and how an evaluation is queued.

Receivers run after the writer's commit (the seams guarantee it) and only enqueue a Celery task
with rule ids: they never evaluate inside a request and never fail the write.
"""

import logging

from django.db.models import Q

from apps.triggers.models import RuleKind, TriggerRule

logger = logging.getLogger(__name__)

EVALUATE_TASK = "ilportal.evaluate_trigger_rules"


def enqueue_evaluation(rule_ids, cause: str) -> None:
    from ilportal.celery import app

    rule_ids = list(rule_ids)
    if not rule_ids:
        return
    try:
        app.send_task(EVALUATE_TASK, args=[rule_ids, cause], queue="default")
    except Exception:  # the broker is away: the next beat evaluates them anyway
        logger.exception("could not queue the evaluation of trigger rules %s", rule_ids)


def on_labels_changed(sender, *, dataset_id, sample_ids, source, user_id=None, **kwargs):
    """New labels can move sample-count and precision rules of the dataset's loops."""
    rule_ids = TriggerRule.objects.filter(
        loop__dataset_id=dataset_id,
        kind__in=(RuleKind.SAMPLE_COUNT, RuleKind.PRECISION),
    ).values_list("pk", flat=True)
    enqueue_evaluation(rule_ids, "labels")


def on_deployed_pointer_moved(sender, *, loop_id, **kwargs):
    """A new deployed version: "since deploy" starts again for the loop's precision rules."""
    from apps.triggers.evaluator import reset_since_deploy

    reset_since_deploy(loop_id)
    rule_ids = TriggerRule.objects.filter(Q(loop_id=loop_id) & ~Q(kind=RuleKind.TIME)).values_list(
        "pk", flat=True
    )
    enqueue_evaluation(rule_ids, "deploy")
