"""COCO detection JSON: `images`, `annotations` (`bbox` = [x, y, width, height]), `categories`."""

import json
import posixpath
import shutil
import tempfile

from apps.datasets.formats.base import (
    Bundle,
    ExportEntry,
    ImageResolver,
    LabeledBox,
    ParsedLabels,
    as_float,
    declared_size,
    unique_class_names,
)

FORMAT = "coco"


def is_coco_document(data) -> bool:
    return isinstance(data, dict) and "images" in data and "annotations" in data


def find_files(bundle: Bundle) -> list[str]:
    found = []
    for name in bundle.with_suffix(".json"):
        try:
            if is_coco_document(json.loads(bundle.read(name))):
                found.append(name)
        except (ValueError, UnicodeDecodeError, RecursionError):
            found.append(name)  # a broken JSON file is reported by parse(), not skipped
    return found


def parse(bundle: Bundle, files: list[str] | None = None) -> ParsedLabels:
    parsed = ParsedLabels(format=FORMAT)
    resolver = ImageResolver(bundle.image_names())
    for name in files if files is not None else find_files(bundle):
        parsed.annotation_files.append(name)
        try:
            _parse_document(name, json.loads(bundle.read(name)), resolver, parsed)
        except (ValueError, UnicodeDecodeError) as exc:
            parsed.file_problems[name] = f"malformed COCO JSON: {exc}"
        except RecursionError:
            parsed.file_problems[name] = "malformed COCO JSON: nested too deeply"
        except (KeyError, TypeError) as exc:
            parsed.file_problems[name] = f"malformed COCO JSON: missing or wrong field {exc}"
    return parsed


def _parse_document(name: str, doc, resolver: ImageResolver, parsed: ParsedLabels) -> None:
    if not is_coco_document(doc):
        raise ValueError("needs 'images' and 'annotations' lists")
    if not isinstance(doc["images"], list) or not isinstance(doc["annotations"], list):
        raise ValueError("'images' and 'annotations' must be lists")
    for field_name in ("images", "annotations", "categories"):
        if not all(isinstance(item, dict) for item in doc.get(field_name, [])):
            raise ValueError(f"every item of '{field_name}' must be an object")
    categories: dict = {}
    for category in doc.get("categories", []):
        category_id, category_name = category["id"], str(category["name"])
        if category_id in categories and categories[category_id] != category_name:
            # Which one a box means cannot be known: storing either would be a silent guess.
            raise ValueError(
                f"category id {category_id!r} is used by both {categories[category_id]!r} and "
                f"{category_name!r}: give each category its own id"
            )
        categories[category_id] = category_name
    parsed.declared_classes = unique_class_names([*parsed.declared_classes, *categories.values()])
    base_dir = posixpath.dirname(name)
    subset_dir = _datumaro_subset_dir(name)
    images = {}
    listed_ids = set()
    for entry in doc["images"]:
        reference = str(entry["file_name"])
        if entry["id"] in listed_ids:
            # Whose annotations are whose cannot be known.
            raise ValueError(f"image id {entry['id']!r} is listed twice in 'images'")
        listed_ids.add(entry["id"])
        path = resolver.resolve(reference, base_dir, *subset_dir)
        if path is None:
            namesakes = resolver.namesakes(reference)
            problem = (
                f"listed in {name}, but {namesakes} files of the upload have that name: give "
                "its path from the upload's top (or beside the JSON file)"
                if namesakes > 1
                else f"listed in {name} but not in the upload"
            )
            key = reference if reference not in parsed.missing_images else f"{reference} ({name})"
            parsed.missing_images[key] = problem
            continue
        if not parsed.claim(path, name):
            continue
        images[entry["id"]] = path
        parsed.labels.setdefault(path, [])
        size = declared_size(entry.get("width"), entry.get("height"))
        if size is not None:
            parsed.declared_sizes[path] = (*size, name)
    orphans = []
    crowds = 0
    with_crowds = set()
    for annotation in doc["annotations"]:
        path = images.get(annotation.get("image_id"))
        if path is None:
            if annotation.get("image_id") not in listed_ids:
                orphans.append(annotation)
            continue  # a listed image that is missing was already reported once
        if path in parsed.image_problems:
            continue
        if annotation.get("iscrowd") in (1, True):
            # A crowd region is an area for evaluation to ignore, not an object: as one box it
            # would teach the model a box around a whole crowd (Ultralytics' converter drops
            # them too). The image keeps its other boxes.
            crowds += 1
            with_crowds.add(path)
            continue
        category = annotation.get("category_id")
        if category not in categories:
            parsed.image_problems[path] = f"{name}: category_id {category!r} is not in categories"
            continue
        bbox = annotation.get("bbox")
        try:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError
            x, y, width, height = (as_float(v) for v in bbox)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
            parsed.image_problems[path] = f"{name}: bbox {bbox!r} is not 4 numbers"
            continue
        parsed.labels[path].append(LabeledBox(categories[category], x, y, x + width, y + height))
    if orphans:
        parsed.notes.append((name, "rejected", _orphans_message(orphans)))
    if crowds:
        regions = f"{crowds} crowd region{'s' if crowds != 1 else ''}"
        message = f"{regions} (iscrowd: 1) left out: areas to ignore, not objects"
        # An image whose only objects are crowds is not an image with nothing in it: stored as
        # labeled with no boxes, it would teach the model to see nothing there. It waits to be
        # labeled instead.
        crowd_only = sorted(p for p in with_crowds if not parsed.labels.get(p))
        for path in crowd_only:
            del parsed.labels[path]
        if crowd_only:
            images_text = f"{len(crowd_only)} image{'s' if len(crowd_only) != 1 else ''}"
            message += f"; {images_text} with only crowd regions stored unlabeled, to label"
        parsed.notes.append((name, "warning", message))


ORPHANS_NAMED = 10


def _orphans_message(orphans: list[dict]) -> str:
    """One line for every annotation whose image_id is not in `images` (they may be many)."""
    described = ", ".join(
        f"annotation {a.get('id')!r} (image_id {a.get('image_id')!r})"
        for a in orphans[:ORPHANS_NAMED]
    )
    more = f" and {len(orphans) - ORPHANS_NAMED} more" if len(orphans) > ORPHANS_NAMED else ""
    count = f"{len(orphans)} annotation{'s' if len(orphans) != 1 else ''}"
    return f"{count} refer to an image_id not in 'images', not imported: {described}{more}"


# Datumaro / CVAT layout: annotations/instances_<subset>.json, images in images/<subset>/, and
# each image's file_name relative to its subset's image folder.
SUBSETS = {"train": "train", "eval": "val", "test": "test"}


def image_path(split: str, file_name: str) -> str:
    return f"images/{SUBSETS.get(split, split)}/{file_name}"


class Writer:
    """Streams one annotations/instances_<subset>.json per subset: images and annotations go
    to temporary files as they come, and are copied into the zip at the end (bounded memory
    however many boxes the dataset has)."""

    def __init__(self, class_names: list[str]):
        self.class_names = class_names
        self.category_ids = {name: i + 1 for i, name in enumerate(class_names)}
        self.subsets: dict[str, _SubsetParts] = {}
        self.next_image_id = 1
        self.next_annotation_id = 1

    def add(self, entry: ExportEntry, sink) -> None:
        subset = SUBSETS.get(entry.split, entry.split)
        parts = self.subsets.get(subset) or self.subsets.setdefault(subset, _SubsetParts())
        image_id = self.next_image_id
        self.next_image_id += 1
        parts.images.append(
            {
                "id": image_id,
                "file_name": posixpath.basename(entry.image_path),
                "width": entry.width,
                "height": entry.height,
            }
        )
        for box in entry.boxes:
            w, h = box.x2 - box.x1, box.y2 - box.y1
            parts.annotations.append(
                {
                    "id": self.next_annotation_id,
                    "image_id": image_id,
                    "category_id": self.category_ids[box.class_name],
                    "bbox": [box.x1, box.y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
            self.next_annotation_id += 1

    def finish(self, sink) -> None:
        categories = [
            {"id": i + 1, "name": name, "supercategory": ""}
            for i, name in enumerate(self.class_names)
        ]
        for subset, parts in sorted(self.subsets.items()):
            with sink.open(f"annotations/instances_{subset}.json") as out:
                out.write(b'{"images": [')
                parts.images.copy_to(out)
                out.write(b'], "annotations": [')
                parts.annotations.copy_to(out)
                out.write(b'], "categories": ' + json.dumps(categories).encode() + b"}")
            parts.close()


class _JsonItems:
    """A JSON array's items, comma-separated, in a temporary file."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.count = 0

    def append(self, item: dict) -> None:
        self.file.write((b"," if self.count else b"") + json.dumps(item).encode())
        self.count += 1

    def copy_to(self, out) -> None:
        self.file.seek(0)
        shutil.copyfileobj(self.file, out, 1024 * 1024)

    def close(self) -> None:
        self.file.close()


class _SubsetParts:
    def __init__(self):
        self.images = _JsonItems()
        self.annotations = _JsonItems()

    def close(self) -> None:
        self.images.close()
        self.annotations.close()


def _datumaro_subset_dir(name: str) -> tuple[str, ...]:
    """Datumaro and CVAT write `annotations/instances_<subset>.json` with file names relative to
    `images/<subset>/` (CVAT names the frames of every task frame_000000.jpg...)."""
    folder, file_name = posixpath.split(name)
    stem = posixpath.splitext(file_name)[0]
    if posixpath.basename(folder) != "annotations" or not stem.startswith("instances_"):
        return ()
    return (posixpath.join(posixpath.dirname(folder), "images", stem.removeprefix("instances_")),)
