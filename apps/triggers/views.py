from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.jobs.services import JobPermissionDenied
from apps.loops.models import Loop
from apps.triggers import dryrun, evaluator, services
from apps.triggers.forms import RuleForm
from apps.triggers.models import TriggerRule
from apps.triggers.status import distance_to_firing


def _rule(rule_id: int) -> TriggerRule:
    return get_object_or_404(TriggerRule.objects.select_related("loop__dataset"), pk=rule_id)


def _dry_run(form: RuleForm):
    draft = TriggerRule(loop=form.loop, **form.values)
    return dryrun.replay(draft, days=form.cleaned_data.get("dry_run_days") or 7)


@permission_required("triggers.view_triggerrule", raise_exception=True)
def loop_rules(request, loop_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    rules = [(rule, distance_to_firing(rule)) for rule in loop.trigger_rules.all()]
    return render(request, "triggers/loop_rules.html", {"loop": loop, "rules": rules})


def _edit(request, loop: Loop, rule: TriggerRule | None):
    initial = {f: getattr(rule, f) for f in services.EDITABLE_FIELDS} if rule else None
    form = RuleForm(request.POST or None, loop=loop, initial=initial)
    replay = None
    if request.method == "POST" and form.is_valid():
        if "dry_run" in request.POST:
            replay = _dry_run(form)
        else:
            try:
                if rule is None:
                    rule = services.create_rule(loop, form.values, user=request.user)
                else:
                    rule = services.update_rule(rule, form.values)
            except services.RuleInvalid as exc:  # the same check; kept for a race with an edit
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Rule {rule.name} saved: it applies from now on.")
                return redirect("triggers:rule", rule_id=rule.pk)
    return render(
        request,
        "triggers/rule_form.html",
        {"loop": loop, "rule": rule, "form": form, "replay": replay},
    )


@permission_required("triggers.add_triggerrule", raise_exception=True)
def rule_create(request, loop_id: int):
    loop = get_object_or_404(Loop.objects.select_related("dataset"), pk=loop_id)
    return _edit(request, loop, None)


@permission_required("triggers.change_triggerrule", raise_exception=True)
def rule_edit(request, rule_id: int):
    rule = _rule(rule_id)
    return _edit(request, rule.loop, rule)


@permission_required("triggers.view_triggerrule", raise_exception=True)
def rule_detail(request, rule_id: int):
    rule = _rule(rule_id)
    return render(
        request,
        "triggers/rule_detail.html",
        {
            "rule": rule,
            "loop": rule.loop,
            "distance": distance_to_firing(rule),
            "decisions": rule.decisions.select_related("job")[:200]
            if request.user.has_perm("triggers.view_decision")
            else [],
        },
    )


@require_POST
@permission_required("triggers.fire_triggerrule", raise_exception=True)
def rule_fire(request, rule_id: int):
    rule = _rule(rule_id)
    try:
        decision = evaluator.fire_now(rule.pk, user=request.user)
    except JobPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc
    if decision.verdict == "fired":
        messages.success(request, decision.message)
    else:
        messages.info(request, decision.message)
    return redirect("triggers:rule", rule_id=rule.pk)


@require_POST
@permission_required("triggers.change_triggerrule", raise_exception=True)
def rule_toggle(request, rule_id: int):
    rule = services.update_rule(_rule(rule_id), {"enabled": not _rule(rule_id).enabled})
    messages.success(request, f"Rule {rule.name} {'enabled' if rule.enabled else 'disabled'}.")
    return redirect("triggers:rule", rule_id=rule.pk)


@require_POST
@permission_required("triggers.delete_triggerrule", raise_exception=True)
def rule_delete(request, rule_id: int):
    rule = _rule(rule_id)
    loop_id = rule.loop_id
    services.delete_rule(rule)
    messages.success(request, f"Rule {rule.name} deleted.")
    return redirect("triggers:loop_rules", loop_id=loop_id)
