"""Events evaluate the affected rules at once: labels (annotation, sample, import), deploys."""

import time

import pytest

from apps.datasets.formats.base import LabeledBox
from apps.datasets.services import submit_annotation
from apps.jobs.models import Job, JobStatus
from apps.loops.models import Loop
from apps.loops.services import move_deployed_pointer
from apps.triggers.evaluator import evaluate_rules
from apps.triggers.models import Decision, TriggerRule
from apps.triggers.services import create_rule
from tests.datasets.conftest import coco_json, zip_bytes
from tests.loops.conftest import add_synthetic_samples
from tests.triggers.conftest import label, trained_version


@pytest.fixture
def sent(monkeypatch):
    """The evaluation tasks queued for Celery, as (rule ids, cause)."""
    from ilportal.celery import app

    queued = []
    monkeypatch.setattr(
        app, "send_task", lambda name, args, queue, **options: queued.append((name, *args, queue))
    )
    return queued


def test_a_saved_label_queues_the_dataset_rules_after_commit(
    loop, sent, django_capture_on_commit_callbacks
):
    count_rule = create_rule(loop, {"name": "n", "kind": "sample_count", "min_samples": 2})
    create_rule(loop, {"name": "t", "kind": "time", "every": 5})  # not moved by labels
    [sample] = label(loop, 1)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit_annotation(sample.pk, [LabeledBox("vest", 1, 1, 9, 9)])
        assert sent == []  # nothing inside the writer's transaction
    for callback in callbacks:
        callback()
    assert sent == [("ilportal.evaluate_trigger_rules", [count_rule.pk], "labels", "default")]
    # The worker's task body: the Nth label starts the training.
    label(loop, 1)
    evaluate_rules(sent[0][1], cause="labels")
    decision = Decision.objects.get(rule=count_rule, verdict="fired")
    assert decision.cause == "labels" and decision.job.kind == "train"


def test_a_deploy_resets_precision_rules_and_queues_them(
    loop, sent, django_capture_on_commit_callbacks
):
    rule = create_rule(
        loop,
        {
            "name": "p",
            "kind": "precision",
            "metric": "f1",
            "comparison": "below",
            "threshold": 0.5,
            "min_fresh_samples": 1,
        },
    )
    TriggerRule.objects.filter(pk=rule.pk).update(measured_key="k", measured_value=0.1)
    version = trained_version(loop)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        move_deployed_pointer(version.pk, action="deploy", started_by="t", reason="", job_id=None)
    rule.refresh_from_db()
    assert (rule.measured_key, rule.measured_value) == ("", None)
    assert sent == [("ilportal.evaluate_trigger_rules", [rule.pk], "deploy", "default")]


def test_an_unreachable_broker_never_fails_the_write(loop, monkeypatch):
    from ilportal.celery import app

    def broker_down(*args, **kwargs):
        raise ConnectionError("redis is away")

    monkeypatch.setattr(app, "send_task", broker_down)
    create_rule(loop, {"name": "n", "kind": "sample_count", "min_samples": 2})
    [sample] = label(loop, 1)
    submit_annotation(sample.pk, [LabeledBox("vest", 1, 1, 9, 9)])  # no exception


@pytest.mark.slow
def test_nth_label_starts_training_through_a_real_worker(live_portal, tiny_loop):
    """Labels arrive through the service; the event → Celery → rule → training → worker, and the
    training's own writes (its version, its TrainedSample rows) do not fire the rule again."""
    loop = Loop.objects.get(pk=tiny_loop.pk)
    Loop.objects.filter(pk=loop.pk).update(auto_evaluate=False)
    # No version yet: the 16 labeled train samples are unseen; the rule waits for 3 more.
    rule = create_rule(loop, {"name": "n", "kind": "sample_count", "min_samples": 19})
    add_synthetic_samples(loop.dataset, 2, domain="edge", split="train", source="device", seed=21)
    time.sleep(2)
    assert not Job.objects.filter(kind="train").exists()
    # No beat runs here: a training can only come from the label event. (The latency itself
    # is measured by bench/trigger_latency.py, not asserted; 30 s only guards against a hang.)
    started = time.monotonic()
    add_synthetic_samples(loop.dataset, 1, domain="edge", split="train", source="device", seed=22)
    while not Job.objects.filter(kind="train").exists():
        assert time.monotonic() - started < 30, live_portal.read_logs()[-4000:]
        time.sleep(0.02)
    job = Job.objects.get(kind="train")
    assert job.trigger == "rule" and job.params["rule_id"] == rule.pk
    deadline = time.monotonic() + 240
    while Job.objects.get(pk=job.pk).status in (JobStatus.QUEUED, JobStatus.RUNNING):
        assert time.monotonic() < deadline, live_portal.read_logs()[-6000:]
        time.sleep(0.5)
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, live_portal.read_logs()[-6000:]
    evaluate_rules([rule.pk], cause="beat")
    time.sleep(1)
    assert Job.objects.filter(kind="train").count() == 1
    rule.refresh_from_db()
    assert rule.last_message == "0 of 19 new labels"


def test_an_import_announces_its_labels_once_and_the_rule_fires(
    loop, sent, run_upload, django_capture_on_commit_callbacks
):
    from apps.datasets.models import Dataset
    from tests.factories import image_bytes

    Dataset.objects.filter(pk=loop.dataset_id).update(train_percent=100, eval_percent=0)
    rule = create_rule(loop, {"name": "n", "kind": "sample_count", "min_samples": 3})
    names = [f"img{i}.png" for i in range(3)]
    files = {name: image_bytes(500 + i) for i, name in enumerate(names)}
    files["annotations.json"] = coco_json(
        [(name, 64, 48) for name in names],
        [(i, "helmet", [2, 2, 10, 10]) for i in range(3)],
        ["helmet", "vest", "cone"],
    )
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        job = run_upload(loop.dataset, [("batch.zip", zip_bytes(files))], format="coco")
    assert job.status == "succeeded", job.result
    labels_sent = [entry for entry in sent if entry[2] == "labels"]
    assert labels_sent == [("ilportal.evaluate_trigger_rules", [rule.pk], "labels", "default")]
    evaluate_rules(labels_sent[0][1], cause="labels")
    assert Decision.objects.get(rule=rule, verdict="fired").inputs["unseen_labels"] == 3
