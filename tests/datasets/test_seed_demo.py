import builtins
from io import StringIO

from django.core.management import call_command

from apps.datasets.models import Dataset, SampleSource, SampleStatus


def test_seed_demo_creates_labeled_synthetic_samples_once(db):
    out = StringIO()
    call_command("seed_demo", "--images", "4", stdout=out)
    dataset = Dataset.objects.get(name="demo-initial")
    assert dataset.class_names == ["helmet", "vest", "cone"]
    samples = list(dataset.samples.all())
    assert len(samples) == 4 and "4 labeled synthetic images" in out.getvalue()
    assert {s.status for s in samples} == {SampleStatus.LABELED}
    assert {s.source for s in samples} == {SampleSource.GENERATOR}
    assert sum(s.current_annotation.boxes.count() for s in samples) >= 4
    again = StringIO()
    call_command("seed_demo", "--images", "4", stdout=again)
    assert "already there" in again.getvalue()
    assert dataset.samples.count() == 4


def test_seed_demo_without_the_ml_core_says_so(db, monkeypatch):
    real_import = builtins.__import__

    def no_ml(name, *args, **kwargs):
        if name.startswith("worker.ml"):
            raise ImportError("No module named 'worker.ml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ml)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "synthetic generator" in out.getvalue() and "no demo dataset" in out.getvalue()
    assert not Dataset.objects.exists()
