"""Darknet YOLO as Datumaro and CVAT write it: obj.data, obj.names, obj_<subset>_data/ with each
image's label file beside it, and <subset>.txt listing the images. Read back by the YOLO reader
(labels beside their images; the subset folders give the split)."""

import posixpath

from apps.datasets.formats.base import ExportEntry
from apps.datasets.formats.yolo import label_lines, names_file

FORMAT = "yolo_darknet"
SUBSETS = {"train": "train", "eval": "valid", "test": "test"}


def image_path(split: str, file_name: str) -> str:
    return f"obj_{SUBSETS.get(split, split)}_data/{file_name}"


class Writer:
    def __init__(self, class_names: list[str]):
        self.class_names = class_names
        self.index = {name: i for i, name in enumerate(class_names)}
        self.images_by_subset: dict[str, list[str]] = {}

    def add(self, entry: ExportEntry, sink) -> None:
        subset = SUBSETS.get(entry.split, entry.split)
        self.images_by_subset.setdefault(subset, []).append(entry.image_path)
        stem_path = posixpath.splitext(entry.image_path)[0]
        sink.write(f"{stem_path}.txt", label_lines(entry, self.index))

    def finish(self, sink) -> None:
        sink.write("obj.names", names_file(self.class_names))
        lines = [f"classes = {len(self.class_names)}"]
        for subset, images in sorted(self.images_by_subset.items()):
            sink.write(f"{subset}.txt", "".join(f"{path}\n" for path in images).encode())
            lines.append(f"{subset} = {subset}.txt")
        lines += ["names = obj.names", "backup = backup/"]
        sink.write("obj.data", ("\n".join(lines) + "\n").encode())
