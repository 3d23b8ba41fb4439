from datetime import UTC, datetime

import pytest

from apps.datasets.models import Sample
from apps.loops.models import ModelVersion, TrainedSample, VersionSource
from apps.triggers import services
from tests.datasets.conftest import run_upload  # noqa: F401  (fixture)
from tests.factories import DatasetFactory, make_sample
from tests.loops.conftest import synthetic_dataset, tiny_loop, tiny_yaml  # noqa: F401

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def loop(db, admin_user):
    from apps.loops.services import create_loop

    dataset = DatasetFactory(name="yard", class_names=["helmet", "vest", "cone"])
    return create_loop(
        name="yard-loop",
        dataset=dataset,
        algorithm_yaml=tiny_yaml(),
        user=admin_user,
        auto_deploy=False,
        auto_evaluate=False,
    )


_seed = iter(range(1000, 100000))


def label(loop, count=1, *, class_name="helmet", split="train", source="upload"):
    """`count` new labeled samples in the loop's dataset."""
    return [
        make_sample(
            loop.dataset,
            next(_seed),
            boxes=[(class_name, 1, 1, 20, 20)],
            split=split,
            source=source,
        )
        for _ in range(count)
    ]


def trained_version(loop, *, number=None, source=VersionSource.TRAINED):
    """A version that saw every labeled train-split sample as it is now (no real archive)."""
    number = number or loop.versions.count() + 1
    version = ModelVersion.objects.create(
        loop=loop,
        number=number,
        source=source,
        artifact=f"models/fake-{number}.zip",
        artifact_sha256="0" * 64,
        artifact_size=1,
        class_names=list(loop.dataset.class_names),
    )
    pairs = Sample.objects.filter(
        dataset=loop.dataset, split="train", current_annotation__isnull=False
    ).values_list("id", "current_annotation_id")
    TrainedSample.objects.bulk_create(
        TrainedSample(version=version, sample_id=s, annotation_id=a) for s, a in pairs
    )
    return version


def make_rule(loop, **fields):
    fields.setdefault("name", f"rule-{fields.get('kind')}")
    rule = services.create_rule(loop, fields)
    return rule


def set_anchor(rule, moment):
    type(rule).objects.filter(pk=rule.pk).update(anchor_at=moment)
    rule.refresh_from_db()
