"""How to store an EXIF-turned photo: what each choice costs in bytes, fidelity and reads.

``python bench/exif_reencode.py`` takes the photographs scikit-image ships (its JPEGs as they
are; its PNG photos saved as camera-like JPEGs, quality 90, 4:2:0), tags each "turned 90°
clockwise" (EXIF orientation 6), and prints a markdown table, per image and choice, of the
stored size as a ratio of the received file, the PSNR of the stored pixels against the exactly
turned pixels (99 = identical), and the time to decode the stored file once (every later read
pays it; "keep + turn on read" pays the turn on every read too).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.ml.orientation import oriented  # noqa: E402

PHOTOS_JPEG = ["hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"]
PHOTOS_PNG = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"]
REPEATS = 5


def camera_files() -> dict[str, bytes]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    files = {}
    for name in PHOTOS_JPEG + PHOTOS_PNG:
        path = folder / name
        if not path.exists():
            continue
        with Image.open(path) as image:
            exif = Image.Exif()
            exif[0x0112] = 6
            out = io.BytesIO()
            if name.endswith(".jpg"):  # keep the file's own tables: re-save as it came
                image.save(out, "JPEG", quality="keep", exif=exif.tobytes())
            else:
                image.convert("RGB").save(
                    out, "JPEG", quality=90, subsampling="4:2:0", exif=exif.tobytes()
                )
            files[name] = out.getvalue()
    return files


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def decode_ms(data: bytes, turn: bool = False) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        with Image.open(io.BytesIO(data)) as image:
            (oriented(image) if turn else image).convert("RGB").load()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def choices(data: bytes) -> dict[str, tuple[bytes, bool]]:
    from apps.datasets.image_checks import ImageInfo, stored_image_bytes

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        turned = oriented(image).convert("RGB")
    info = ImageInfo(width=height, height=width, format="JPEG", orientation=6)
    q95, png = io.BytesIO(), io.BytesIO()
    turned.save(q95, "JPEG", quality=95)
    turned.save(png, "PNG")
    return {
        "JPEG, the file's own tables (chosen)": (stored_image_bytes(data, info), False),
        "JPEG quality 95": (q95.getvalue(), False),
        "PNG (lossless)": (png.getvalue(), False),
        "keep the file + turn on every read": (data, True),
    }


def main() -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")
    django.setup()
    print("| image | size | stored as | bytes (× received) | PSNR dB | read ms |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, data in camera_files().items():
        with Image.open(io.BytesIO(data)) as image:
            exact = np.asarray(oriented(image).convert("RGB"))
            size = "x".join(map(str, image.size))
        for label, (stored, turn_on_read) in choices(data).items():
            with Image.open(io.BytesIO(stored)) as image:
                pixels = np.asarray((oriented(image) if turn_on_read else image).convert("RGB"))
            print(
                f"| {name} | {size} | {label} | {len(stored) / len(data):.2f} | "
                f"{psnr(exact, pixels):.1f} | {decode_ms(stored, turn_on_read):.1f} |"
            )


if __name__ == "__main__":
    main()
