"""An index on datasets_sample for the hardness-ordered queue, kept in the labeling app.

The queue reads (dataset, status=queued) ordered by hardness (highest first, nulls last), then
id: this index walks that order directly, so a page costs the same at 100,000 queued samples as
at 10. It lives here rather than on Sample's Meta so that the datasets app's migrations (which
other features also change) stay untouched; it is dropped again on reverse.
"""

from django.db import migrations

NAME = "labeling_sample_queue_order"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        hardness = "hardness_score DESC NULLS LAST"
    else:  # SQLite sorts NULL lowest, so DESC already puts it last
        hardness = "hardness_score DESC"
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {NAME} ON datasets_sample "
        f"(dataset_id, status, {hardness}, id DESC)"
    )


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("labeling", "0001_claims_skips_reviews"), ("datasets", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
