from django.core.management.base import BaseCommand

from apps.datasets.demo import GeneratorMissing, seed_demo


class Command(BaseCommand):
    help = "Creates the demo dataset of labeled synthetic images (needs the ML core)."

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=60)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--image-size", type=int, default=192)

    def handle(self, *args, images, seed, image_size, **options):
        try:
            result = seed_demo(images=images, seed=seed, image_size=image_size)
        except GeneratorMissing as exc:
            # Not an error: the portal works without the demo data.
            self.stdout.write(self.style.WARNING(str(exc)))
            return
        if result.already_there:
            self.stdout.write(f"The demo dataset {result.dataset.name!r} is already there.")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo dataset {result.dataset.name!r}: {result.created} labeled synthetic "
                    f"images added ({result.dataset.samples.count()} in all)."
                )
            )
