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
