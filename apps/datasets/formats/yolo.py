"""YOLO txt: per image a `labels/.../<stem>.txt` of `class cx cy w h` (fractions of the size).

Class names come from classes.txt, obj.names or data.yaml (`names:`).
"""

import posixpath

import yaml

from apps.datasets.formats.base import (
    Bundle,
    ExportEntry,
    LabeledBox,
    ParsedLabels,
    as_float,
    split_from_path,
)
from worker.ml.config import PlainYamlLoader

FORMAT = "yolo"
CLASS_FILES = ("classes.txt", "obj.names")
YAML_FILES = ("data.yaml", "dataset.yaml")


class _Malformed(ValueError):
    pass


def _is_class_file(name: str) -> bool:
    return posixpath.basename(name) in CLASS_FILES + YAML_FILES


def find_files(bundle: Bundle) -> list[str]:
    stems = {posixpath.splitext(posixpath.basename(path))[0] for path in bundle.image_names()}
    return [
        name
        for name in bundle.with_suffix(".txt")
        if not _is_class_file(name)
        and (
            posixpath.splitext(posixpath.basename(name))[0] in stems
            or "labels" in name.split("/")[:-1]
        )
    ]


def _yaml_class_names(name: str, data: bytes) -> dict[int, str]:
    """data.yaml's `names` (a list, or a map of class index → name); raises ValueError."""
    try:
        names = yaml.load(data.decode("utf-8-sig"), Loader=PlainYamlLoader).get("names")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"{name}: malformed YAML ({exc})") from exc
    except RecursionError as exc:
        raise ValueError(f"{name}: malformed YAML (nested too deeply)") from exc
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise ValueError(f"{name}: 'names' must be a list or a mapping")
    index = {}
    for key, value in names.items():
        try:
            if isinstance(key, bool):
                raise ValueError
            number = int(key)  # quoted keys too ('0': cat), as Ultralytics reads them
        except (TypeError, ValueError):
            raise ValueError(f"{name}: 'names' keys must be class indexes, not {key!r}") from None
        if number < 0 or number in index:
            raise ValueError(f"{name}: 'names' has class index {key!r} twice or below 0")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{name}: class {number} is not a name (a string)")
        index[number] = str(value)
    return index


def read_class_names(bundle: Bundle) -> tuple[dict[int, str] | None, str | None]:
    """(names, problem): class index → name as the upload's class files give them, or a reason
    they are unusable. A data.yaml map may leave indexes out: those have no name. Several class
    files (classes.txt, obj.names, data.yaml) must agree: a class index would otherwise mean one
    class or another without a word."""
    found: list[tuple[str, dict[int, str]]] = []
    for name in bundle.names:
        base = posixpath.basename(name)
        if base in CLASS_FILES:
            lines = bundle.read(name).decode("utf-8-sig", errors="replace").splitlines()
            found.append((name, dict(enumerate(line.strip() for line in lines if line.strip()))))
        elif base in YAML_FILES:
            try:
                found.append((name, _yaml_class_names(name, bundle.read(name))))
            except ValueError as exc:
                return None, str(exc)
    if not found:
        return None, None
    first_file, first = found[0]
    for other_file, other in found[1:]:
        if other != first:
            return None, (
                f"{other_file}: its class names {_listed(other)} differ from {_listed(first)} "
                f"in {first_file}; keep one class file, or make them agree"
            )
    return first, None


def _listed(names: dict[int, str]):
    return list(names.values()) if list(names) == list(range(len(names))) else names


class _ImageForLabel:
    def __init__(self, image_names: list[str]):
        self.by_stem_path = {posixpath.splitext(path)[0]: path for path in image_names}
        self.by_stem: dict[str, list[str]] = {}
        for path in image_names:
            stem = posixpath.splitext(posixpath.basename(path))[0]
            self.by_stem.setdefault(stem, []).append(path)

    def find(self, label_path: str) -> str | None:
        stem_path = posixpath.splitext(label_path)[0]
        parts = stem_path.split("/")
        candidates = [stem_path]
        if "labels" in parts:
            index = len(parts) - 1 - parts[::-1].index("labels")
            candidates.append("/".join([*parts[:index], "images", *parts[index + 1 :]]))
        for candidate in candidates:
            if candidate in self.by_stem_path:
                return self.by_stem_path[candidate]
        same = self.by_stem.get(parts[-1], [])
        return same[0] if len(same) == 1 else None


def parse(
    bundle: Bundle, files: list[str] | None = None, fallback_classes: list[str] | None = None
) -> ParsedLabels:
    parsed = ParsedLabels(format=FORMAT, normalized=True)
    class_names, problem = read_class_names(bundle)
    if problem:
        parsed.file_problems[problem.split(":", 1)[0]] = problem
        return parsed
    if class_names is None:
        class_names = dict(enumerate(fallback_classes or []))
    parsed.declared_classes = [class_names[index] for index in sorted(class_names)]
    images = _ImageForLabel(bundle.image_names())
    for name in files if files is not None else find_files(bundle):
        parsed.annotation_files.append(name)
        path = images.find(name)
        if path is None:
            parsed.missing_images[name] = "a label file whose image is not in the upload"
            continue
        if not parsed.claim(path, name):
            continue
        try:
            parsed.labels[path] = _parse_lines(name, bundle.read(name), class_names)
        except _Malformed as exc:
            parsed.image_problems[path] = f"{name}: {exc}"
            parsed.labels.pop(path, None)
        split = split_from_path(path)
        if split:
            parsed.splits[path] = split
    return parsed


def _parse_lines(name: str, data: bytes, class_names: dict[int, str]) -> list[LabeledBox]:
    boxes = []
    try:
        text = data.decode("utf-8-sig")  # Windows editors start a file with a BOM
    except UnicodeDecodeError as exc:
        raise _Malformed("not a text file") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise _Malformed(f"line {number}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            index = int(fields[0])
            cx, cy, w, h = (as_float(value) for value in fields[1:])
        except ValueError as exc:
            raise _Malformed(f"line {number}: not numbers: {line.strip()!r}") from exc
        if index not in class_names:
            if 0 <= index < max(class_names, default=-1):
                raise _Malformed(
                    f"line {number}: class index {index} has no name in the class file"
                )
            known = f"{len(class_names)} classes" if class_names else "no classes.txt/data.yaml"
            raise _Malformed(f"line {number}: class index {index} is out of range ({known})")
        boxes.append(LabeledBox(class_names[index], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return boxes


# Ultralytics layout (images/<subset>/, labels/<subset>/, data.yaml), with obj.names and
# classes.txt beside it so that Datumaro's and older tools' YOLO readers find the names too.
SUBSETS = {"train": "train", "eval": "val", "test": "test"}


def image_path(split: str, file_name: str) -> str:
    return f"images/{SUBSETS.get(split, split)}/{file_name}"


# Pixels a normalized coordinate may be off by once written: far under the smallest box side the
# portal stores (boxes.MIN_BOX_SIDE), so that any box it exported comes back on re-import.
PIXEL_PRECISION_DIGITS = 6


def label_lines(entry: ExportEntry, index: dict[str, int]) -> bytes:
    # Decimals enough for the image's size: 8 would lose a 0.01 px box on a 9000 px image.
    # Fixed-point, never exponents, which some readers do not take.
    decimals = PIXEL_PRECISION_DIGITS + len(str(max(entry.width, entry.height, 1)))
    lines = []
    for box in entry.boxes:
        cx = (box.x1 + box.x2) / 2 / entry.width
        cy = (box.y1 + box.y2) / 2 / entry.height
        w = (box.x2 - box.x1) / entry.width
        h = (box.y2 - box.y1) / entry.height
        numbers = " ".join(f"{value:.{decimals}f}" for value in (cx, cy, w, h))
        lines.append(f"{index[box.class_name]} {numbers}\n")
    return "".join(lines).encode()


def names_file(class_names: list[str]) -> bytes:
    return "".join(f"{name}\n" for name in class_names).encode()


class Writer:
    def __init__(self, class_names: list[str]):
        self.class_names = class_names
        self.index = {name: i for i, name in enumerate(class_names)}
        self.subsets: set[str] = set()

    def add(self, entry: ExportEntry, sink) -> None:
        subset = SUBSETS.get(entry.split, entry.split)
        self.subsets.add(subset)
        stem = posixpath.splitext(posixpath.basename(entry.image_path))[0]
        sink.write(f"labels/{subset}/{stem}.txt", label_lines(entry, self.index))

    def finish(self, sink) -> None:
        # No `path:`: Ultralytics then resolves the subsets beside this file, wherever it lies.
        data: dict = {subset: f"images/{subset}" for subset in sorted(self.subsets)}
        data["names"] = dict(enumerate(self.class_names))
        sink.write(YAML_FILES[0], yaml.safe_dump(data, sort_keys=False).encode())
        sink.write("obj.names", names_file(self.class_names))
        sink.write("classes.txt", names_file(self.class_names))
