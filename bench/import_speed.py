"""Import speed of a COCO zip from the synthetic generator: local files vs S3 (moto server).

``python bench/import_speed.py [--images 2000]`` builds the zip once, then for each storage
imports it into a fresh dataset the way the import job does (the staged zip is read back from
storage, every image checked, hashed, stored, and its sample + annotation rows written), and
prints a markdown table. The database is a fresh SQLite file (set DATABASE_URL for another).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="ilportal-bench-import-"))
os.environ.setdefault("VAR_DIR", str(WORK / "var"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")
os.environ["S3_BUCKET"] = ""  # each run below chooses its storage itself

import django  # noqa: E402

django.setup()
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

from django.core.files.base import ContentFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from apps.datasets import services  # noqa: E402
from apps.datasets.importing import (  # noqa: E402
    ImportOptions,
    ImportReport,
    bundle_from_staged,
    discard_staged,
    import_bundle,
)
from apps.datasets.models import Sample  # noqa: E402


def build_zip(images: int, seed: int) -> Path:
    from worker.ml.synthetic import generate_dataset

    started = time.perf_counter()
    folder = generate_dataset(WORK / "coco", images, "initial", seed).parent
    archive = WORK / "coco.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(folder).as_posix())
    print(
        f"generated {images} images + COCO JSON in {time.perf_counter() - started:.1f} s "
        f"({archive.stat().st_size / 1e6:.1f} MB zip)",
        file=sys.stderr,
    )
    return archive


def local_storage() -> dict:
    location = WORK / "media"
    shutil.rmtree(location, ignore_errors=True)
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }


def s3_storage(endpoint: str) -> dict:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket="ilportal-bench")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "ilportal-bench",
            "endpoint_url": endpoint,
            "access_key": "bench",
            "secret_key": "bench",
            "region_name": "us-east-1",
            "file_overwrite": False,
        },
    }


def run_import(name: str, storage: dict, archive: Path) -> dict:
    from django.conf import settings

    with override_settings(STORAGES={**settings.STORAGES, "default": storage}):
        dataset = services.create_dataset(name=f"bench-{name}", class_names=[])
        staged = [
            services.stage_upload_file(
                services.new_staging_prefix(), 0, "coco.zip", ContentFile(archive.read_bytes())
            )
        ]
        report = ImportReport()
        started = time.perf_counter()
        with bundle_from_staged(staged, report) as bundle:
            import_bundle(dataset.pk, bundle, ImportOptions(unknown_classes="add"), report=report)
        seconds = time.perf_counter() - started
        discard_staged(staged)
    counts = report.as_dict()["counts"]
    return {
        "storage": name,
        "images": counts["accepted"],
        "rejected": counts["rejected"],
        "seconds": seconds,
        "per_s": counts["accepted"] / seconds,
        "boxes": sum(1 for _ in Sample.objects.filter(dataset=dataset)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        call_command("migrate", verbosity=0)
        archive = build_zip(args.images, args.seed)
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            rows = [
                run_import("local files", local_storage(), archive),
                run_import("S3 (moto server)", s3_storage(f"http://{host}:{port}"), archive),
            ]
        finally:
            server.stop()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    local = rows[0]["per_s"]
    print(
        f"Import of a {args.images}-image COCO zip (192x192 PNG, synthetic initial domain), "
        f"database {django.db.connection.vendor}:\n"
    )
    print("| storage | images | seconds | images/s | vs local |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['storage']} | {row['images']} | {row['seconds']:.1f} | "
            f"{row['per_s']:.0f} | {row['per_s'] / local:.2f} |"
        )
    ok = all(row["images"] == args.images and row["rejected"] == 0 for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
