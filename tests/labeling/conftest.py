import pytest

from apps.datasets.models import Sample, SampleStatus
from tests.factories import DatasetFactory, make_sample


@pytest.fixture
def dataset(db):
    return DatasetFactory(name="yard")


def queued_samples(dataset, count, *, start=0, hardness=None, **kwargs):
    """`count` stored samples, queued for labeling; hardness: a list of scores (or None)."""
    samples = []
    for index in range(count):
        sample = make_sample(dataset, seed=start + index, size=(120, 90), **kwargs)
        sample.status = SampleStatus.QUEUED
        if hardness is not None:
            sample.hardness_score = hardness[index]
        sample.save(update_fields=["status", "hardness_score"])
        samples.append(sample)
    return samples


def refresh(sample) -> Sample:
    return Sample.objects.get(pk=sample.pk)
