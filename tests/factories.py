import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.accounts.roles import sync_roles
from apps.jobs.models import Job, JobTrigger

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if extracted:
            sync_roles()
            user.groups.add(Group.objects.get(name=extracted))
        user.save()


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = "system_check"
    trigger = JobTrigger.MANUAL
    started_by = "test"


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "datasets.Dataset"

    name = factory.Sequence(lambda n: f"dataset-{n}")
    class_names = factory.LazyFunction(lambda: ["helmet", "vest", "cone"])


def image_bytes(seed: int = 0, size=(64, 48), fmt: str = "PNG") -> bytes:
    """A small distinct image: the seed sets its colour and a few pixels."""
    import io

    from PIL import Image

    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_sample(dataset, seed: int = 0, *, boxes=None, source="upload", split=None, size=(64, 48)):
    """A stored sample (through the service, so its file exists in storage)."""
    from apps.datasets import services
    from apps.datasets.formats.base import LabeledBox

    labeled = None if boxes is None else [LabeledBox(*box) for box in boxes]
    return services.store_sample(
        dataset,
        image_bytes(seed, size),
        original_name=f"img{seed}.png",
        source=source,
        boxes=labeled,
        split=split,
    ).sample
