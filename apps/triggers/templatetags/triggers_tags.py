from django import template

from apps.triggers.models import Decision
from apps.triggers.status import distance_to_firing

register = template.Library()


@register.inclusion_tag("triggers/_loop_triggers.html", takes_context=True)
def loop_triggers(context, loop):
    """The loop page's trigger card: each rule's distance to firing and the last decisions."""
    perms = context.get("perms")
    if perms is None or not perms["triggers"]["view_triggerrule"]:
        return {"visible": False}
    rules = [(rule, distance_to_firing(rule)) for rule in loop.trigger_rules.all()]
    decisions = Decision.objects.filter(rule__loop=loop).select_related("rule", "job")[:10]
    return {"visible": True, "loop": loop, "rules": rules, "decisions": decisions, "perms": perms}
