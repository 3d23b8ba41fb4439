"""The triggers' overview of many loops at once: the counts are the evaluator's, the nearest
sample-count rule, the newest decision across a loop's rules."""

from datetime import timedelta

from apps.datasets.formats.base import LabeledBox
from apps.datasets.services import submit_annotation
from apps.triggers import conditions
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision
from apps.triggers.status import (
    distance_to_firing,
    loop_page_triggers,
    nearest_sample_count_rule,
    triggers_by_loop,
    unseen_label_counts,
)
from tests.triggers.conftest import T0, label, make_rule, trained_version


def test_counts_of_many_rules_in_one_go_equal_the_evaluators(loop):
    every = make_rule(loop, kind="sample_count", min_samples=10)
    vests = make_rule(loop, name="vests", kind="sample_count", min_samples=4, class_name="vest")
    make_rule(loop, kind="time", every=30, every_unit="minutes")
    samples = label(loop, 3)
    trained_version(loop)  # saw those three
    label(loop, 2, class_name="vest")
    label(loop, 1)
    submit_annotation(samples[0].pk, [LabeledBox("vest", 2, 2, 30, 30)])  # a relabel
    rules = list(loop.trigger_rules.select_related("loop"))
    counts = unseen_label_counts(rules)
    expected = {
        rule.pk: conditions.unseen_labeled_samples(loop, rule.class_name).count()
        for rule in (every, vests)
    }
    assert counts == expected == {every.pk: 4, vests.pk: 3}
    assert evaluate_rule(vests.pk, now=T0).inputs["unseen_labels"] == 3
    overview = triggers_by_loop([loop.pk])[loop.pk]
    shown = {rule.pk: text for rule, text in overview.rules}
    assert shown[every.pk] == distance_to_firing(every) == "4 of 10 labels"
    assert shown[vests.pk] == "3 of 4 labels of class vest"


def test_before_any_training_every_labeled_train_sample_counts(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=5)
    label(loop, 2)
    label(loop, 1, split="eval")
    assert unseen_label_counts([rule]) == {rule.pk: 2}


def test_the_nearest_rule_is_the_one_missing_the_fewest_labels(loop):
    far = make_rule(loop, name="far", kind="sample_count", min_samples=100)
    near = make_rule(loop, name="near", kind="sample_count", min_samples=6)
    off = make_rule(loop, name="off", kind="sample_count", min_samples=3, enabled=False)
    label(loop, 4)
    progress = triggers_by_loop([loop.pk])[loop.pk].nearest
    assert progress.rule == near
    assert (progress.count, progress.needed, progress.remaining, progress.percent) == (4, 6, 2, 67)
    assert nearest_sample_count_rule([far, off], {far.pk: 4, off.pk: 4}).rule == far
    assert nearest_sample_count_rule([off], {off.pk: 4}) is None


def test_the_last_decision_is_the_newest_of_all_the_loops_rules(loop):
    first = make_rule(loop, name="first", kind="sample_count", min_samples=5)
    second = make_rule(loop, name="second", kind="time", every=30, every_unit="minutes")
    Decision.objects.all().delete()
    for minutes, rule, message in [(3, first, "old"), (1, second, "newest"), (2, first, "mid")]:
        Decision.objects.create(
            rule=rule,
            at=T0 - timedelta(minutes=minutes),
            cause="beat",
            verdict="waiting",
            reason="below_count",
            message=message,
        )
    overview = triggers_by_loop([loop.pk])[loop.pk]
    assert overview.last_decision.message == "newest" and overview.last_decision.rule == second
    page = loop_page_triggers(loop.pk)
    assert [d.message for d in page.decisions] == ["newest", "mid", "old"]
    assert page.last_decision.message == "newest"


def test_a_loop_without_rules_has_an_empty_overview(loop):
    overview = triggers_by_loop([loop.pk])[loop.pk]
    assert overview.rules == [] and overview.nearest is None and overview.last_decision is None


def test_a_kept_count_is_counted_again_after_any_write_to_the_dataset_or_a_new_training(loop):
    from apps.labeling.services import queue_sample

    rule = make_rule(loop, kind="sample_count", min_samples=10)
    samples = label(loop, 3)
    assert unseen_label_counts([rule]) == {rule.pk: 3}
    label(loop, 1)  # a sample saved
    assert unseen_label_counts([rule]) == {rule.pk: 4}
    queue_sample(samples[0].pk)  # labeled → queued by an update(), without post_save
    assert unseen_label_counts([rule]) == {rule.pk: 3}
    trained_version(loop)  # saw every labeled train sample
    assert unseen_label_counts([rule]) == {rule.pk: 0}
    submit_annotation(samples[1].pk, [LabeledBox("vest", 2, 2, 30, 30)])  # labels changed
    assert unseen_label_counts([rule]) == {rule.pk: 1}
