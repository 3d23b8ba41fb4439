"""Pascal VOC: one XML per image (`<annotation>` with `<object><name>` and `<bndbox>`)."""

import posixpath
import xml.etree.ElementTree as ElementTree
from xml.parsers import expat
from xml.sax.saxutils import escape

from apps.datasets.formats.base import (
    SPLIT_DIRECTORY_NAMES,
    Bundle,
    ExportEntry,
    ImageResolver,
    LabeledBox,
    ParsedLabels,
    as_float,
    declared_size,
    unique_class_names,
)

FORMAT = "voc"


class _Malformed(ValueError):
    pass


def _refuse_dtd(*args) -> None:
    raise _Malformed("XML with a DOCTYPE or entities is not accepted")


def _root(data: bytes):
    # Entity expansion is how XML bombs work; VOC files never need a DTD. The parser looks for
    # it (a byte search would miss it in UTF-16) and stops there, before any entity is read.
    checker = expat.ParserCreate()
    checker.StartDoctypeDeclHandler = _refuse_dtd
    checker.EntityDeclHandler = _refuse_dtd
    try:
        checker.Parse(data, True)
        return ElementTree.fromstring(data)
    except (expat.ExpatError, ElementTree.ParseError) as exc:
        raise _Malformed(f"not well-formed XML ({exc})") from exc


def find_files(bundle: Bundle) -> list[str]:
    found = []
    for name in bundle.with_suffix(".xml"):
        try:
            if _root(bundle.read(name)).tag == "annotation":
                found.append(name)
        except _Malformed:
            found.append(name)  # reported by parse()
    return found


def parse(bundle: Bundle, files: list[str] | None = None) -> ParsedLabels:
    parsed = ParsedLabels(format=FORMAT)
    resolver = ImageResolver(bundle.image_names())
    classes: list[str] = []
    for name in files if files is not None else find_files(bundle):
        parsed.annotation_files.append(name)
        try:
            root = _root(bundle.read(name))
            if root.tag != "annotation":
                raise _Malformed(f"the root element is <{root.tag}>, not <annotation>")
            reference = (root.findtext("filename") or "").strip()
            if not reference:
                raise _Malformed("no <filename>")
        except _Malformed as exc:
            parsed.file_problems[name] = f"malformed VOC XML: {exc}"
            continue
        base_dir = posixpath.dirname(name)
        path = resolver.resolve(reference, base_dir) or resolver.resolve(
            reference, posixpath.join(base_dir, "..", "JPEGImages")
        )
        if path is None:
            parsed.missing_images[reference] = f"named in {name} but not in the upload"
            continue
        if not parsed.claim(path, name):
            continue
        boxes = []
        try:
            for obj in root.iter("object"):
                class_name = (obj.findtext("name") or "").strip()
                bndbox = obj.find("bndbox")
                if not class_name or bndbox is None:
                    raise _Malformed("an <object> without <name> or <bndbox>")
                coordinates = [bndbox.findtext(tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
                try:
                    x1, y1, x2, y2 = (as_float(value) for value in coordinates)
                except (TypeError, ValueError) as exc:
                    raise _Malformed(f"<bndbox> {coordinates} is not 4 numbers") from exc
                classes.append(class_name)
                boxes.append(LabeledBox(class_name, x1, y1, x2, y2))
        except _Malformed as exc:
            parsed.image_problems[path] = f"{name}: {exc}"
            continue
        parsed.labels[path] = boxes
        size = declared_size(root.findtext("size/width"), root.findtext("size/height"))
        if size is not None:
            parsed.declared_sizes[path] = (*size, name)
    parsed.declared_classes = unique_class_names([*_labelmap_classes(bundle), *classes])
    _read_image_sets(bundle, parsed)
    return parsed


def _labelmap_classes(bundle: Bundle) -> list[str]:
    """Class order from labelmap.txt (Datumaro, CVAT), if the upload has one."""
    for name in bundle.names:
        if posixpath.basename(name) == LABELMAP:
            return read_labelmap(bundle.read(name))
    return []


def _image_set_split(name: str) -> str | None:
    """The split an ImageSets/Main/<split>.txt file lists, or None for any other file."""
    directory, file_name = posixpath.split(name)
    if not directory.endswith("ImageSets/Main"):
        return None
    return SPLIT_DIRECTORY_NAMES.get(posixpath.splitext(file_name)[0].lower())


def has_image_sets(bundle: Bundle) -> bool:
    return any(_image_set_split(name) for name in bundle.names)


def _read_image_sets(bundle: Bundle, parsed: ParsedLabels) -> None:
    """ImageSets/Main/<split>.txt lists image stems per split. A listed image with no XML is
    noted: Datumaro and CVAT write no XML for an image without objects, so it may mean "no
    objects" or "not labeled yet"; the import's option decides."""
    labeled = {posixpath.splitext(posixpath.basename(path))[0]: path for path in parsed.labels}
    by_stem: dict[str, list[str]] = {}
    for path in bundle.image_names():
        by_stem.setdefault(posixpath.splitext(posixpath.basename(path))[0], []).append(path)
    refused = set(parsed.image_problems)
    for name in bundle.names:
        split = _image_set_split(name)
        if split is None:
            continue
        for line in bundle.read(name).decode("utf-8-sig", errors="replace").split():
            if line in labeled:
                parsed.splits[labeled[line]] = split
                continue
            candidates = by_stem.get(line, [])
            if len(candidates) == 1 and candidates[0] not in refused:
                parsed.splits[candidates[0]] = split
                parsed.listed_without_labels.setdefault(candidates[0], name)


SUBSETS = {"train": "train", "eval": "val", "test": "test"}
LABELMAP = "labelmap.txt"


def image_path(split: str, file_name: str) -> str:
    return f"JPEGImages/{file_name}"


def labelmap_colour(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour map (index 0, black, is the background)."""
    r = g = b = 0
    for shift in range(8):
        r |= ((index >> 0) & 1) << (7 - shift)
        g |= ((index >> 1) & 1) << (7 - shift)
        b |= ((index >> 2) & 1) << (7 - shift)
        index >>= 3
    return r, g, b


def write_labelmap(class_names: list[str]) -> bytes:
    """Datumaro's and CVAT's labelmap.txt: `name:r,g,b:parts:actions`, background first."""
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    for index, name in enumerate(class_names, start=1):
        r, g, b = labelmap_colour(index)
        lines.append(f"{name}:{r},{g},{b}::")
    return ("\n".join(lines) + "\n").encode()


def read_labelmap(data: bytes) -> list[str]:
    names = []
    for line in data.decode("utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split(":", 1)[0].strip()
        if name and name != "background":
            names.append(name)
    return names


class Writer:
    """One XML per labeled image (written as it comes), ImageSets/Main/<subset>.txt and
    labelmap.txt at the end."""

    def __init__(self, class_names: list[str]):
        self.class_names = class_names
        self.stems_by_subset: dict[str, list[str]] = {}

    def add(self, entry: ExportEntry, sink) -> None:
        file_name = posixpath.basename(entry.image_path)
        stem = posixpath.splitext(file_name)[0]
        self.stems_by_subset.setdefault(SUBSETS.get(entry.split, entry.split), []).append(stem)
        objects = "".join(
            f"<object><name>{escape(box.class_name)}</name><pose>Unspecified</pose>"
            f"<truncated>0</truncated><difficult>0</difficult><bndbox>"
            f"<xmin>{box.x1!r}</xmin><ymin>{box.y1!r}</ymin><xmax>{box.x2!r}</xmax>"
            f"<ymax>{box.y2!r}</ymax></bndbox></object>"
            for box in entry.boxes
        )
        xml = (
            f"<annotation><folder>JPEGImages</folder><filename>{escape(file_name)}</filename>"
            f"<size><width>{entry.width}</width><height>{entry.height}</height><depth>3</depth>"
            f"</size><segmented>0</segmented>{objects}</annotation>"
        )
        sink.write(f"Annotations/{stem}.xml", xml.encode())

    def finish(self, sink) -> None:
        for subset, stems in sorted(self.stems_by_subset.items()):
            sink.write(f"ImageSets/Main/{subset}.txt", ("\n".join(stems) + "\n").encode())
        sink.write(LABELMAP, write_labelmap(self.class_names))
