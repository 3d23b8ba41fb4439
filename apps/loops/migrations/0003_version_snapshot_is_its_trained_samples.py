"""ModelVersion.snapshot (every trained pair as JSON, decoded with every version fetched) goes:
the same pairs are the version's TrainedSample rows (recorded by 0002 for older versions and by
register_version since). Going back fills the JSON again from those rows."""

from django.db import migrations


def refill_snapshot_from_rows(apps, schema_editor):
    ModelVersion = apps.get_model("loops", "ModelVersion")
    TrainedSample = apps.get_model("loops", "TrainedSample")
    for version in ModelVersion.objects.all().iterator():
        pairs = TrainedSample.objects.filter(version_id=version.pk).order_by("sample_id")
        version.snapshot = [list(pair) for pair in pairs.values_list("sample_id", "annotation_id")]
        version.save(update_fields=["snapshot"])


class Migration(migrations.Migration):
    dependencies = [
        ("loops", "0002_trained_samples"),
    ]

    operations = [
        # Reversed, this runs after the field is added back: the JSON is refilled from the rows.
        migrations.RunPython(migrations.RunPython.noop, refill_snapshot_from_rows),
        migrations.RemoveField(model_name="modelversion", name="snapshot"),
    ]
