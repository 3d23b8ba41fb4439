"""An index on datasets_annotation for "samples labeled by hand per day", kept in the labeling app.

The loop page charts the manual revisions of the last 30 days; without this index that reads
every revision of every dataset (100,000+ rows). Like 0002 it lives here so that the datasets
app's migrations stay untouched; it is dropped again on reverse.
"""

from django.db import migrations

NAME = "labeling_annotation_source_time"


def create_index(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {NAME} ON datasets_annotation (source, created_at)"
    )


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("labeling", "0002_sample_queue_index"), ("datasets", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
