"""Other tools read our exports: Datumaro (CVAT's dataset framework) imports each zip and finds
the same images, subsets, class names and boxes, exactly. pycocotools reads the COCO JSON.

Datumaro is a test dependency: requirements-interop.txt (./ilp test installs it)."""

import io
import json
import logging
import zipfile

import datumaro as dm
import pytest

from apps.datasets.exporting import export_file_name, write_export
from apps.datasets.models import Sample
from tests.factories import make_sample

# Datumaro's own notice about one of its plugins, not about our files.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:datumaro")

# Our format → the Datumaro format name that must read it (detection picks the same one).
DATUMARO_FORMATS = {
    "coco": "coco_instances",
    "voc": "voc_detection",
    "yolo": "yolo",
    "yolo_darknet": "yolo",
}
SUBSET = {"train": "train", "eval": "val", "test": "test"}
DARKNET_SUBSET = {"train": "train", "eval": "valid", "test": "test"}


@pytest.fixture(autouse=True)
def _quiet_datumaro():
    logging.getLogger().setLevel(logging.ERROR)  # "Missing annotation field" chatter


def fill(dataset):
    make_sample(
        dataset,
        1,
        boxes=[("helmet", 1.5, 2.25, 10.75, 20), ("cone", 30, 5, 63, 47)],
        split="train",
    )
    make_sample(dataset, 2, boxes=[("vest", 0, 0, 64, 48), ("helmet", 8, 8, 16, 24)], split="eval")
    make_sample(dataset, 3, boxes=[("cone", 2, 3, 4, 5)], split="test", size=(40, 30))


def expected(dataset, fmt) -> dict:
    """{(image file name, subset): sorted [(class, x, y, w, h)]} from the database."""
    subsets = DARKNET_SUBSET if fmt == "yolo_darknet" else SUBSET
    found = {}
    for sample in Sample.objects.filter(dataset=dataset).exclude(current_annotation=None):
        boxes = sorted(
            (b.class_name, b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1)
            for b in sample.current_annotation.boxes.all()
        )
        found[(export_file_name(sample), subsets[sample.split])] = boxes
    return found


def read_with_datumaro(tmp_path, archive: bytes, fmt: str) -> dict:
    root = tmp_path / fmt
    zipfile.ZipFile(io.BytesIO(archive)).extractall(root)
    assert DATUMARO_FORMATS[fmt] in dm.Environment().detect_dataset(str(root))
    imported = dm.Dataset.import_from(str(root), DATUMARO_FORMATS[fmt])
    labels = imported.categories()[dm.AnnotationType.label]
    found = {}
    for item in imported:
        name = item.media.path.rsplit("/", 1)[-1]
        found[(name, item.subset)] = sorted(
            (labels[a.label].name, *a.get_bbox())
            for a in item.annotations
            if a.type == dm.AnnotationType.bbox
        )
    return found


def close(a: list, b: list, tolerance: float) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and all(abs(p - q) <= tolerance for p, q in zip(x[1:], y[1:], strict=True))
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("fmt", list(DATUMARO_FORMATS))
def test_datumaro_reads_our_export_with_the_same_boxes(fmt, dataset, tmp_path):
    fill(dataset)
    out = io.BytesIO()
    write_export(dataset, dataset.samples.all(), fmt, out)
    found = read_with_datumaro(tmp_path, out.getvalue(), fmt)
    wanted = expected(dataset, fmt)
    assert set(found) == set(wanted)
    for key, boxes in wanted.items():
        if fmt.startswith("yolo"):
            # YOLO stores fractions with 8 decimals: exact up to that rounding.
            assert close(found[key], boxes, tolerance=1e-5), (key, found[key], boxes)
        else:
            assert found[key] == boxes, key  # COCO and VOC keep pixels exactly


def test_datumaro_reads_the_class_names_in_the_dataset_order(dataset, tmp_path):
    fill(dataset)
    for fmt, name in DATUMARO_FORMATS.items():
        out = io.BytesIO()
        write_export(dataset, dataset.samples.all(), fmt, out)
        root = tmp_path / f"names-{fmt}"
        zipfile.ZipFile(io.BytesIO(out.getvalue())).extractall(root)
        labels = dm.Dataset.import_from(str(root), name).categories()[dm.AnnotationType.label]
        names = [label.name for label in labels if label.name != "background"]
        assert names == dataset.class_names, fmt


def test_pycocotools_reads_the_coco_export(dataset, tmp_path):
    from pycocotools.coco import COCO

    fill(dataset)
    out = io.BytesIO()
    write_export(dataset, dataset.samples.all(), "coco", out)
    zipfile.ZipFile(io.BytesIO(out.getvalue())).extractall(tmp_path)
    coco = COCO(str(tmp_path / "annotations" / "instances_train.json"))
    (image,) = coco.loadImgs(coco.getImgIds())
    assert (tmp_path / "images" / "train" / image["file_name"]).is_file()
    boxes = sorted(
        (coco.loadCats(a["category_id"])[0]["name"], *a["bbox"])
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
    )
    assert boxes == [("cone", 30, 5, 33, 42), ("helmet", 1.5, 2.25, 9.25, 17.75)]
    json.loads((tmp_path / "annotations" / "instances_val.json").read_text())


# --- And the other way: what Datumaro writes, we import --------------------------------------


def datumaro_dataset(tmp_path):
    import numpy as np
    from PIL import Image as PILImage

    images = {}
    for name, size in (("a", (64, 48)), ("b", (64, 48)), ("c", (40, 30))):
        path = tmp_path / "src" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.full((size[1], size[0], 3), len(images) * 60, dtype=np.uint8)).save(
            path
        )
        images[name] = str(path)
    items = [
        dm.DatasetItem(
            id="a",
            subset="train",
            media=dm.Image.from_file(path=images["a"]),
            annotations=[dm.Bbox(2, 3, 10, 12, label=0), dm.Bbox(20, 10, 30, 20, label=1)],
        ),
        dm.DatasetItem(
            id="b", subset="val", media=dm.Image.from_file(path=images["b"]), annotations=[]
        ),
        dm.DatasetItem(
            id="c",
            subset="train",
            media=dm.Image.from_file(path=images["c"]),
            annotations=[dm.Bbox(1, 1, 8, 6, label=1)],
        ),
    ]
    return dm.Dataset.from_iterable(items, categories=["helmet", "vest"])


def zip_directory(root) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


@pytest.mark.parametrize(
    "datumaro_format", ["coco_instances", "voc_detection", "yolo", "yolo_ultralytics"]
)
def test_we_import_what_datumaro_writes(datumaro_format, dataset, run_upload, tmp_path):
    from tests.factories import DatasetFactory

    out = tmp_path / datumaro_format
    datumaro_dataset(tmp_path).export(str(out), datumaro_format, save_media=True)
    copy = DatasetFactory(name=f"from-{datumaro_format}", class_names=["helmet", "vest"])
    job = run_upload(
        copy,
        [("datumaro.zip", zip_directory(out))],
        listed_without_labels="no_objects",
    )
    assert job.status == "succeeded", job.log
    assert job.result["counts"]["rejected"] == 0, job.result["report"]
    by_name = {
        s.original_name.rsplit(".", 1)[0]: s
        for s in Sample.objects.filter(dataset=copy).select_related("current_annotation")
    }
    assert set(by_name) == {"a", "b", "c"}, job.result["report"]

    def boxes(name):
        annotation = by_name[name].current_annotation
        assert annotation is not None, (name, job.result["report"])
        return sorted(
            (b.class_name, round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3))
            for b in annotation.boxes.all()
        )

    assert boxes("a") == [("helmet", 2, 3, 12, 15), ("vest", 20, 10, 50, 30)]
    assert boxes("c") == [("vest", 1, 1, 9, 7)]
    assert boxes("b") == []  # no objects, though Datumaro may write no label for it
    assert by_name["a"].split == "train" and by_name["b"].split == "eval"
