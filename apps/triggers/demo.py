"""The demo loop's rule, so that the first start shows the loop retraining by itself."""

from apps.loops.models import Loop
from apps.triggers import services
from apps.triggers.models import RuleKind

DEMO_RULE_NAME = "retrain after 5 new labels"
DEMO_RULE_LABELS = 5


def add_demo_rule(loop: Loop):
    """A sample-count rule on the demo loop (None if the loop has rules already): label a few of
    the hard examples a simulated device sends (README) and a training starts by itself."""
    if loop.trigger_rules.exists():
        return None
    return services.create_rule(
        loop,
        {
            "name": DEMO_RULE_NAME,
            "kind": RuleKind.SAMPLE_COUNT,
            "min_samples": DEMO_RULE_LABELS,
            "action": "train",
            "cooldown_minutes": 0,
        },
    )
