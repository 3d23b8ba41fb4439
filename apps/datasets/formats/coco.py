"""COCO detection JSON: `images`, `annotations` (`bbox` = [x, y, width, height]), `categories`."""

import json
import posixpath

from apps.datasets.formats.base import (
    Bundle,
    ExportEntry,
    ImageResolver,
    LabeledBox,
    ParsedLabels,
    as_float,
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
        except (ValueError, UnicodeDecodeError):
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
        except (KeyError, TypeError) as exc:
            parsed.file_problems[name] = f"malformed COCO JSON: missing or wrong field {exc}"
    return parsed


def _parse_document(name: str, doc, resolver: ImageResolver, parsed: ParsedLabels) -> None:
    if not is_coco_document(doc):
        raise ValueError("needs 'images' and 'annotations' lists")
    if not isinstance(doc["images"], list) or not isinstance(doc["annotations"], list):
        raise ValueError("'images' and 'annotations' must be lists")
    categories = {}
    for category in doc.get("categories", []):
        categories[category["id"]] = str(category["name"])
    parsed.declared_classes = unique_class_names([*parsed.declared_classes, *categories.values()])
    base_dir = posixpath.dirname(name)
    images = {}
    for entry in doc["images"]:
        reference = str(entry["file_name"])
        path = resolver.resolve(reference, base_dir)
        if path is None:
            parsed.missing_images[reference] = f"listed in {name} but not in the upload"
            continue
        images[entry["id"]] = path
        parsed.labels.setdefault(path, [])
        parsed.declared_sizes[path] = (entry.get("width"), entry.get("height"))
    for annotation in doc["annotations"]:
        path = images.get(annotation.get("image_id"))
        if path is None:
            continue  # its image is missing: already reported once for the image
        if path in parsed.image_problems:
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
        except (TypeError, ValueError):
            parsed.image_problems[path] = f"{name}: bbox {bbox!r} is not 4 numbers"
            continue
        parsed.labels[path].append(LabeledBox(categories[category], x, y, x + width, y + height))


def image_path(split: str, file_name: str) -> str:
    return f"images/{split}/{file_name}"


def write(entries: list[ExportEntry], class_names: list[str], add_file) -> None:
    """Writes annotations.json through add_file(path, bytes); the images are written apart."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    category_ids = {name: i + 1 for i, name in enumerate(class_names)}
    images, annotations = [], []
    for image_id, entry in enumerate(entries, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": entry.image_path,
                "width": entry.width,
                "height": entry.height,
            }
        )
        for box in entry.boxes:
            w, h = box.x2 - box.x1, box.y2 - box.y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[box.class_name],
                    "bbox": [box.x1, box.y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    document = {"images": images, "annotations": annotations, "categories": categories}
    add_file("annotations.json", json.dumps(document, indent=1).encode())
