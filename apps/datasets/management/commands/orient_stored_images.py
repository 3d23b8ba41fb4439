from django.core.management.base import BaseCommand

from apps.datasets.image_checks import ImageRejected
from apps.datasets.orientation import orient_stored_sample, samples_stored_turned


class Command(BaseCommand):
    help = (
        "Turns images stored before EXIF orientation was applied on intake into the shown "
        "frame (file, size, thumbnail and the boxes of every revision). Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", type=int, help="only this dataset (id)")

    def handle(self, *args, dataset=None, **options):
        checked = turned = 0
        for sample_id in samples_stored_turned(dataset).iterator(chunk_size=2000):
            checked += 1
            try:
                orientation = orient_stored_sample(sample_id)
            except (ImageRejected, OSError) as exc:
                self.stdout.write(self.style.WARNING(f"sample {sample_id}: left as it is: {exc}"))
                continue
            if orientation != 1:
                turned += 1
                self.stdout.write(f"sample {sample_id}: EXIF orientation {orientation} applied")
        self.stdout.write(self.style.SUCCESS(f"{turned} of {checked} samples turned."))
