"""The sweeper removes scratch folders of dead processes and files without rows, after a grace."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from apps.loops import artifacts
from apps.ops import sweeper
from tests.factories import DatasetFactory, JobFactory, make_sample

DAY = 24 * 3600


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (old, old))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_scratch_folders_of_dead_processes_go_and_live_ones_stay(tmp_path, settings):
    settings.SWEEP_GRACE_S = DAY
    dead = tmp_path / f"ilportal-fpn-{_dead_pid()}-abc"
    alive = tmp_path / f"ilportal-fpn-{os.getpid()}-def"
    old_anonymous = tmp_path / "ilportal-import-old"
    young_anonymous = tmp_path / "ilportal-import-young"
    unrelated = tmp_path / "someone-else"
    for folder in (dead, alive, old_anonymous, young_anonymous, unrelated):
        folder.mkdir()
        (folder / "checkpoint.weights.h5").write_bytes(b"w" * 1000)
    _age(dead, 120)
    _age(alive, 2 * DAY)
    _age(old_anonymous, 2 * DAY)
    _age(unrelated, 2 * DAY)

    listed = sweeper.sweep_temp_folders(dry_run=True, temp_dir=str(tmp_path))
    assert sorted(Path(r.name).name for r in listed) == sorted([dead.name, old_anonymous.name])
    assert dead.exists() and old_anonymous.exists()  # a dry run removes nothing

    removed = sweeper.sweep_temp_folders(temp_dir=str(tmp_path))
    assert {r.reason.split(" ")[0] for r in removed} == {"its", "untouched"}
    assert all(r.size == 1000 for r in removed)
    assert not dead.exists() and not old_anonymous.exists()
    assert alive.exists() and young_anonymous.exists() and unrelated.exists()


def test_an_archive_fetched_by_a_killed_process_is_listed_and_removed(
    tmp_path, settings, monkeypatch
):
    settings.SWEEP_GRACE_S = DAY
    source = tmp_path / "model.zip"
    source.write_bytes(b"m" * 1000)
    stored = artifacts.store_file(str(source), "models/sweeper-test", "-model.zip")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    try:
        fetched = Path(artifacts.fetch(stored.name, stored.sha256))
    finally:
        default_storage.delete(stored.name)
    assert fetched.parent == tmp_path / "tmp"
    assert sweeper.sweep_temp_folders(dry_run=True) == []  # its process (this one) is alive

    # As if this process had been killed before removing it: the same name with a dead pid.
    left = fetched.with_name(fetched.name.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-", 1))
    fetched.rename(left)
    _age(left, 120)
    [listed] = sweeper.sweep_temp_folders(dry_run=True)
    assert (listed.name, listed.size) == (str(left), 1000) and left.exists()
    sweeper.sweep_temp_folders()
    assert not left.exists()


@pytest.mark.django_db
def test_files_without_rows_go_after_the_grace_and_referenced_ones_stay(
    settings, capsys, monkeypatch, tmp_path
):
    settings.SWEEP_GRACE_S = 3600
    # The command sweeps the temp dir too: an empty one here, not the machine's (where a process
    # killed earlier may have left a scratch folder that would be counted).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    media = Path(settings.MEDIA_ROOT)
    sample = make_sample(DatasetFactory(), seed=1)
    orphan_image = default_storage.save("datasets/9/images/ab/orphan.png", ContentFile(b"img"))
    orphan_model = default_storage.save("models/loop-1/abc-model.zip", ContentFile(b"z" * 131072))
    young_orphan = default_storage.save("models/loop-1/young-model.zip", ContentFile(b"y"))
    staged = default_storage.save("uploads/u1/00000-a.png", ContentFile(b"u"))
    JobFactory(kind="dataset_import", params={"staged": [{"name": "a.png", "key": staged}]})
    partial = media / "models" / "loop-1" / ".partial-xyz"
    partial.write_bytes(b"half")
    for path in media.rglob("*"):
        if path.is_file() and path.name != "young-model.zip":
            _age(path, 2 * 3600)

    call_command("sweep_orphans", "--dry-run")
    out = capsys.readouterr().out
    for name in (orphan_image, orphan_model, ".partial-xyz"):
        assert name in out
    assert "Would remove 3 item(s)" in out
    assert (media / orphan_model).exists()

    call_command("sweep_orphans")
    assert "Removed 3 item(s), 131,079 bytes." in capsys.readouterr().out
    assert not (media / orphan_image).exists() and not (media / orphan_model).exists()
    assert not partial.exists()
    for kept in (sample.image.name, young_orphan, staged):
        assert (media / kept).exists(), kept


@pytest.mark.django_db
def test_the_storage_sweep_works_on_s3(s3_storage):
    client, bucket = s3_storage
    sample = make_sample(DatasetFactory(), seed=2)
    orphan = default_storage.save("models/loop-1/orphan-model.zip", ContentFile(b"o"))
    removed = sweeper.sweep_storage(grace_s=-60)  # everything counts as old
    assert [r.name for r in removed] == [orphan]
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert sample.image.name in keys and orphan not in keys
