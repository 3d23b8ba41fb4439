"""Sample-count rules: labels the latest trained version did not see, N−1 vs N."""

from apps.datasets.formats.base import LabeledBox
from apps.datasets.services import submit_annotation
from apps.jobs.models import Job
from apps.triggers.evaluator import evaluate_rule
from apps.triggers.models import Decision, Firing
from tests.triggers.conftest import T0, label, make_rule, trained_version


def test_fires_at_n_not_at_n_minus_one(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=5)
    label(loop, 4)
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == "waiting" and decision.message == "4 of 5 new labels"
    assert not Job.objects.exists()
    label(loop, 1)
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == "fired"
    job = Job.objects.get()
    assert (job.kind, job.trigger, job.params["rule_id"]) == ("train", "rule", rule.pk)
    assert decision.job == job and decision.inputs["unseen_labels"] == 5
    assert Firing.objects.get().job == job


def test_seen_samples_do_not_count_and_relabels_do(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=3)
    samples = label(loop, 3)
    trained_version(loop)  # saw those three
    assert evaluate_rule(rule.pk, now=T0).message == "0 of 3 new labels"
    submit_annotation(samples[0].pk, [LabeledBox("vest", 2, 2, 30, 30)])  # a relabel
    label(loop, 1)
    rule.refresh_from_db()
    evaluate_rule(rule.pk, now=T0)
    rule.refresh_from_db()
    assert rule.last_inputs["unseen_labels"] == 2
    label(loop, 1)
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"


def test_other_splits_and_unlabeled_samples_do_not_count(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=2)
    label(loop, 3, split="eval")
    label(loop, 3, split="test")
    evaluate_rule(rule.pk, now=T0)
    rule.refresh_from_db()
    assert rule.last_inputs["unseen_labels"] == 0


def test_counted_for_one_class(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=2, class_name="cone")
    label(loop, 5, class_name="helmet")
    label(loop, 1, class_name="cone")
    assert evaluate_rule(rule.pk, now=T0).message == "1 of 2 new labels of class cone"
    label(loop, 1, class_name="cone")
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"


def test_a_finished_training_resets_the_count(loop):
    """The training's own writes (its TrainedSample rows) do not fire the rule again."""
    rule = make_rule(loop, kind="sample_count", min_samples=2)
    label(loop, 2)
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"
    Job.objects.update(status="succeeded")
    trained_version(loop)
    decision = evaluate_rule(rule.pk, now=T0)
    assert decision.verdict == "waiting" and decision.message == "0 of 2 new labels"
    assert Job.objects.count() == 1
    assert list(Decision.objects.order_by("id").values_list("verdict", flat=True)) == [
        "fired",
        "waiting",
    ]


def test_a_resave_of_unchanged_boxes_is_not_a_new_label(loop):
    """Save pressed twice, a reviewer re-saving, an import of the same labels: a new revision
    (the history keeps it), but not a label the latest version did not see."""
    rule = make_rule(loop, kind="sample_count", min_samples=1)
    sample = label(loop, 1)[0]
    submit_annotation(sample.pk, [LabeledBox("vest", 2, 2, 30, 30), LabeledBox("cone", 5, 5, 9, 9)])
    trained_version(loop)
    resaved, _ = submit_annotation(
        sample.pk, [LabeledBox("cone", 5.0, 5.0, 9.0, 9.0), LabeledBox("vest", 2, 2, 30, 30)]
    )
    sample.refresh_from_db()
    assert sample.current_annotation == resaved and resaved.revision == 3
    assert evaluate_rule(rule.pk, now=T0).message == "0 of 1 new labels"
    assert not Job.objects.exists()


def test_a_relabel_undone_is_not_a_new_label_but_a_moved_box_is(loop):
    rule = make_rule(loop, kind="sample_count", min_samples=1)
    sample = label(loop, 1)[0]  # helmet (1, 1, 20, 20)
    trained_version(loop)
    submit_annotation(sample.pk, [LabeledBox("vest", 1, 1, 20, 20)])
    submit_annotation(sample.pk, [LabeledBox("helmet", 1, 1, 20, 20)])
    assert evaluate_rule(rule.pk, now=T0).message == "0 of 1 new labels"
    submit_annotation(sample.pk, [LabeledBox("helmet", 1, 1, 20, 21)])
    assert evaluate_rule(rule.pk, now=T0).verdict == "fired"
