"""Evaluation reuses the baseline's stored metrics on identical data instead of loading and
running the baseline again; re-evaluating the deployed version keeps its comparison."""

import pytest

from apps.jobs import services as jobs
from apps.jobs.runner import run_job
from apps.loops import evaluation as evaluation_module
from apps.loops import services
from apps.loops.evaluation import run_evaluation
from apps.loops.models import Evaluation
from bench.page_data import build

pytestmark = pytest.mark.django_db(transaction=True)


class FakeModel:
    def __init__(self, label):
        self.label = label


@pytest.fixture
def fake_ml(monkeypatch):
    """The model is not what is tested here: loading and measuring are counted instead."""
    loaded, measured = [], []

    def load_version(version):
        loaded.append(version.label)
        return FakeModel(version.label)

    def measure(model, data):
        measured.append(model.label)
        score = 0.5 + 0.1 * int(model.label[1:])
        return {
            "mAP": score,
            "AP50": score,
            "precision": score,
            "recall": score,
            "f1": score,
            "per_class": {},
        }

    monkeypatch.setattr(evaluation_module.ml_models, "load_version", load_version)
    monkeypatch.setattr(evaluation_module.ml_models, "measure", measure)
    monkeypatch.setattr(evaluation_module.ml_models, "discard", lambda model: None)
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    return loaded, measured


def evaluate(version):
    job = services.start_evaluation(version)
    run_job(job.pk, "test-worker", run_evaluation)
    job.refresh_from_db()
    assert job.status == "succeeded", job.log
    return job


def test_the_deployed_baseline_is_not_run_again_on_unchanged_data(fake_ml):
    loaded, measured = fake_ml
    portal = build(samples=140, versions=3)
    v1, v2, v3 = portal.versions
    portal.loop.refresh_from_db()
    assert portal.loop.deployed_version == v2
    portal.loop.gate_min_gain = {}
    portal.loop.auto_deploy = False
    portal.loop.save()

    # Re-evaluating the deployed v2 compares it with v1, the version it replaced.
    job = evaluate(v2)
    assert loaded == ["v2", "v1"]
    assert job.result["baseline"] == "v1"
    assert not any("First version" in check["text"] for check in job.result["gate"])
    assert {e.baseline_id for e in Evaluation.objects.filter(job=job)} == {v1.pk}

    # v3 against the deployed v2 on the same data: v2's stored metrics are reused.
    loaded.clear()
    measured.clear()
    job = evaluate(v3)
    assert loaded == ["v3"] and set(measured) == {"v3"}
    rows = Evaluation.objects.filter(job=job)
    assert {e.baseline_id for e in rows} == {v2.pk}
    assert all(e.baseline_metrics["f1"] == pytest.approx(0.7) for e in rows)
    assert "stored metrics fit this data" in job.log


def test_the_baseline_runs_when_the_data_changed(fake_ml):
    loaded, _ = fake_ml
    portal = build(samples=140, versions=3)
    v1, v2, v3 = portal.versions
    evaluate(v2)
    # v3 is evaluated on data v2 never saw: one eval sample labeled again changes the hash
    from apps.datasets.formats.base import LabeledBox
    from apps.datasets.models import Sample
    from apps.datasets.services import submit_annotation

    sample = Sample.objects.filter(dataset=portal.dataset, split="eval", status="labeled").first()
    submit_annotation(sample.pk, [LabeledBox("cone", 1, 1, 9, 9)])
    loaded.clear()
    evaluate(v3)
    assert loaded == ["v3", "v2"]
