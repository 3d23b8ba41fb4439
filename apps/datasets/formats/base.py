"""What the three annotation formats share: a bundle of files, labels per image, problems."""

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from apps.datasets.image_checks import (
    is_supported_format,
    looks_like_image_name,
    sniff_image_format,
)
from apps.datasets.zip_safety import EntryRejected

SPLIT_DIRECTORY_NAMES = {
    "train": "train",
    "training": "train",
    "val": "eval",
    "valid": "eval",
    "validation": "eval",
    "eval": "eval",
    "test": "test",
}


# Never images: not sniffed (a label file is not read twice to learn that).
TEXT_SUFFIXES = (".json", ".xml", ".txt", ".yaml", ".yml", ".names", ".csv")


@dataclass
class Bundle:
    """The files of one upload (a zip or loose files), by normalised path; read on demand."""

    names: list[str]
    read: Callable[[str], bytes]
    # The first bytes of a file, without reading it whole (a video in the upload): optional.
    read_head: Callable[[str], bytes] | None = None
    _content_formats: dict = field(default_factory=dict, repr=False, compare=False)

    def image_names(self) -> list[str]:
        """Images by name, and files of a supported image format whatever they are called."""
        return [
            name
            for name in self.names
            if looks_like_image_name(name) or is_supported_format(self.content_format(name))
        ]

    def content_format(self, name: str) -> str | None:
        """The image format the file's first bytes announce (None: not an image)."""
        if looks_like_image_name(name) or name.lower().endswith(TEXT_SUFFIXES):
            return None
        if name not in self._content_formats:
            try:
                head = self.read_head(name) if self.read_head else self.read(name)[:32]
            except (EntryRejected, OSError):
                head = b""
            self._content_formats[name] = sniff_image_format(head)
        return self._content_formats[name]

    def with_suffix(self, *suffixes: str) -> list[str]:
        return [name for name in self.names if name.lower().endswith(suffixes)]


@dataclass(frozen=True)
class LabeledBox:
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class ParsedLabels:
    """What an annotation parser found.

    labels: image path → boxes (an image listed with no boxes is labeled as empty).
    image_problems: image path → why that image cannot be imported as labeled.
    file_problems: annotation file → why it was refused as a whole.
    declared_classes: class names in the order the files declare them.
    declared_sizes: image path → (width, height, annotation file) as the labels state it; the
        boxes are in those pixels, so an image of another size cannot take them.
    notes: extra report lines (file, outcome, message) about labels that fit no image.
    listed_without_labels: image path → the list naming it (VOC ImageSets) when no label file
        says anything about it.
    """

    format: str
    labels: dict[str, list[LabeledBox]] = field(default_factory=dict)
    image_problems: dict[str, str] = field(default_factory=dict)
    file_problems: dict[str, str] = field(default_factory=dict)
    missing_images: dict[str, str] = field(default_factory=dict)
    declared_classes: list[str] = field(default_factory=list)
    annotation_files: list[str] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    declared_sizes: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list)
    listed_without_labels: dict[str, str] = field(default_factory=dict)
    # YOLO boxes are fractions of the image size until the image has been decoded.
    normalized: bool = False
    label_sources: dict[str, str] = field(default_factory=dict)

    def claim(self, path: str, label_file: str) -> bool:
        """Records that `label_file` labels the image; False (and the image refused) when
        another label file, or this one a second time, already did: merging or choosing one
        would change the labels without a word."""
        earlier = self.label_sources.get(path)
        if earlier is None:
            self.label_sources[path] = label_file
            return True
        where = (
            f"twice in {label_file}"
            if earlier == label_file
            else (f"in both {earlier} and {label_file}")
        )
        self.image_problems[path] = (
            f"labeled {where}: which labels are meant cannot be known; keep one and upload again"
        )
        return False


@dataclass(frozen=True)
class ExportEntry:
    """One sample as an exporter writes it: where its image goes in the zip, and its boxes."""

    image_path: str
    width: int
    height: int
    split: str
    boxes: list[LabeledBox]


def declared_size(width, height) -> tuple[int, int] | None:
    """A size stated in a label file, if it is one (absent or zero means 'not stated')."""
    try:
        size = (int(as_float(width)), int(as_float(height)))
    except (TypeError, ValueError, OverflowError):
        return None
    return size if size[0] > 0 and size[1] > 0 else None


def split_from_path(path: str) -> str | None:
    """A split named by a directory of the path (images/train/a.jpg → train, Darknet's
    obj_valid_data/a.jpg → eval), if any."""
    for part in path.lower().split("/")[:-1]:
        if part.startswith("obj_") and part.endswith("_data"):
            part = part[4:-5]
        if part in SPLIT_DIRECTORY_NAMES:
            return SPLIT_DIRECTORY_NAMES[part]
    return None


class ImageResolver:
    """Finds the bundle image an annotation refers to: as written, beside the file, by name."""

    def __init__(self, image_names: Iterable[str]):
        self.paths = set(image_names)
        self.by_basename: dict[str, list[str]] = {}
        for path in self.paths:
            self.by_basename.setdefault(posixpath.basename(path), []).append(path)

    def resolve(self, reference: str, relative_to: str = "", *also_in: str) -> str | None:
        """`also_in`: folders (from the upload's top) to look in after the file's own."""
        reference = reference.replace("\\", "/")
        # As written from the upload's top: leading "/", "./" and "../" segments dropped (only
        # whole segments: ".hidden/a.jpg" is not "hidden/a.jpg").
        parts = posixpath.normpath(reference).split("/")
        while parts[:1] in ([""], ["."], [".."]):
            parts.pop(0)
        from_top = "/".join(parts)
        candidates = [
            posixpath.normpath(posixpath.join(relative_to, reference)),
            *(posixpath.normpath(posixpath.join(folder, reference)) for folder in also_in),
            from_top,
        ]
        for candidate in candidates:
            if candidate in self.paths:
                return candidate
        same_name = self.by_basename.get(posixpath.basename(reference), [])
        return same_name[0] if len(same_name) == 1 else None

    def namesakes(self, reference: str) -> int:
        """How many files of the upload bear the reference's file name."""
        return len(self.by_basename.get(posixpath.basename(reference.replace("\\", "/")), []))


def as_float(value) -> float:
    """A coordinate; a non-number raises ValueError (NaN passes and is judged later)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def unique_class_names(names: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen
