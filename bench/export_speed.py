"""Export job speed and memory: one storage reader vs several, local files vs S3 (moto).

``python bench/export_speed.py [--images 1000] [--boxes 5] [--latency-ms 20]`` fills a dataset
with small labeled images (through the real service) on each storage, then writes a COCO export
the way the export job does, with one storage reader (as the old in-request export read: one
image after the other) and with DATASET_EXPORT_READERS threads, and prints a markdown table with
seconds, images/s and the speed-up over one reader. On local files it also traces the peak of
Python memory (tracemalloc) for a quarter of the images and for all of them: bounded memory
means the peak does not grow with the number of images. moto on loopback answers in well under
a millisecond, so S3 is also run with --latency-ms added to each read (a real bucket's first-byte
latency). The database is a fresh SQLite file (set DATABASE_URL for another).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = Path(tempfile.mkdtemp(prefix="ilportal-bench-export-"))
os.environ.setdefault("VAR_DIR", str(WORK / "var"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")
os.environ["S3_BUCKET"] = ""  # each run below chooses its storage itself

import django  # noqa: E402

django.setup()
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from apps.datasets import exporting, services  # noqa: E402
from apps.datasets.formats.base import LabeledBox  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from import_speed import local_storage, s3_storage  # noqa: E402


def image_bytes(seed: int) -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGB", (96, 72), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % 96, (seed // 96) % 72), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fill(name: str, images: int, boxes: int):
    dataset = services.create_dataset(name=f"bench-{name}", class_names=["a", "b", "c"])
    for seed in range(images):
        labeled = [LabeledBox("abc"[k % 3], k, k, k + 10 + seed % 7, k + 8) for k in range(boxes)]
        services.store_sample(
            dataset,
            image_bytes(seed),
            original_name=f"{seed}.png",
            source="upload",
            boxes=labeled,
        )
    return dataset


@contextlib.contextmanager
def simulated_latency(seconds: float):
    real_read = exporting._read_image

    def slow_read(name):
        time.sleep(seconds)
        return real_read(name)

    exporting._read_image = slow_read
    try:
        yield
    finally:
        exporting._read_image = real_read


def run_export(dataset, readers: int, limit: int | None = None, trace: bool = False) -> dict:
    """One COCO export into a temporary file. With `trace`, the peak of Python memory is
    measured (tracemalloc slows everything and counts every thread, so only for local files:
    the S3 runs share the process with the moto server)."""
    samples = dataset.samples.all()
    if limit is not None:
        samples = dataset.samples.filter(pk__in=list(samples.values_list("pk", flat=True)[:limit]))
    with override_settings(DATASET_EXPORT_READERS=readers), tempfile.TemporaryFile() as out:
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        count = exporting.write_export(dataset, samples, "coco", out)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else None
        tracemalloc.stop()
        size = out.tell()
    return {"images": count, "seconds": seconds, "peak": peak, "zip_mb": size / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=20,
        help="also run S3 with this much added to each image read (a real bucket's first-byte "
        "latency; moto on loopback has almost none); 0 to skip",
    )
    args = parser.parse_args()
    from django.conf import settings

    rows = []
    try:
        call_command("migrate", verbosity=0)
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            local = local_storage()
            for name, storage in (
                ("local files", local),
                ("S3 (moto server)", s3_storage(f"http://{host}:{port}")),
            ):
                with override_settings(STORAGES={**settings.STORAGES, "default": storage}):
                    started = time.perf_counter()
                    dataset = fill(name, args.images, args.boxes)
                    print(
                        f"{name}: filled in {time.perf_counter() - started:.1f} s", file=sys.stderr
                    )
                    readers = settings.DATASET_EXPORT_READERS
                    serial = run_export(dataset, 1)
                    parallel = run_export(dataset, readers)
                    rows.append((name, 1, serial, serial))
                    rows.append((name, readers, parallel, serial))
                    if storage is local:
                        for part in (args.images // 4, args.images):
                            traced = run_export(dataset, readers, part, trace=True)
                            rows.append((f"{name}, memory traced", readers, traced, None))
                    elif args.latency_ms:
                        with simulated_latency(args.latency_ms / 1000):
                            serial = run_export(dataset, 1)
                            parallel = run_export(dataset, readers)
                        slow = f"{name} + {args.latency_ms} ms per read"
                        rows.append((slow, 1, serial, serial))
                        rows.append((slow, readers, parallel, serial))
        finally:
            server.stop()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(
        f"COCO export of {args.images} labeled 96x72 PNG samples, {args.boxes} boxes each, "
        f"database {django.db.connection.vendor}:\n"
    )
    columns = ["storage", "readers", "images", "seconds", "images/s", "vs 1 reader"]
    print("| " + " | ".join([*columns, "peak traced MB", "zip MB"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, readers, row, serial in rows:
        ratio = f"{serial['seconds'] / row['seconds']:.2f}" if serial else ""
        peak = f"{row['peak'] / 1e6:.1f}" if row["peak"] is not None else ""
        print(
            f"| {name} | {readers} | {row['images']} | {row['seconds']:.1f} | "
            f"{row['images'] / row['seconds']:.0f} | {ratio} | {peak} | "
            f"{row['zip_mb']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
