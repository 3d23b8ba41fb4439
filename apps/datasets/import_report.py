"""The report of one import, bounded however large the upload.

Every line goes to a CSV file as it is added (a 240,000-entry zip makes 240,000 lines); the job
row keeps only the counts per outcome and the first lines of each outcome, so the job and import
pages stay small. The full CSV is saved in storage at the end and offered for download.
"""

import csv
import io
import tempfile
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage


class ImportOutcome:
    READ = "read"  # an annotation or side file that was used
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    WARNING = "warning"
    IGNORED = "ignored"

    ALL = ("accepted", "duplicate", "rejected", "warning", "ignored", "read")


REPORT_COLUMNS = ("file", "outcome", "message")
# A file name or message longer than this is cut (with "…"): a 100 kB class name repeated on
# every image's line would otherwise make a small upload into a report of gigabytes.
MAX_REPORT_TEXT = 500


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_REPORT_TEXT else text[: MAX_REPORT_TEXT - 1] + "…"


def _spreadsheet_safe(text: str) -> str:
    """A file name from an upload may start like a formula ("=HYPERLINK(...)"); spreadsheets
    would run it when the CSV is opened, so such a cell gets a leading apostrophe."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def report_storage_name(job_id: int) -> str:
    return f"reports/imports/{job_id}.csv"


@dataclass
class ImportReport:
    format: str = ""
    classes_added: list[str] = field(default_factory=list)
    lines_kept_per_outcome: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ImportOutcome.ALL, 0))
    # The first lines of each outcome, in the order they came (what the pages show).
    lines: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if not self.lines_kept_per_outcome:
            self.lines_kept_per_outcome = settings.DATASET_IMPORT_REPORT_LINES
        # Text spooled to disk past 1 MB: the full report never has to fit in memory.
        self._full = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by save/close)
            max_size=1024 * 1024, mode="w+", newline="", encoding="utf-8"
        )
        self._csv = csv.writer(self._full)
        self._csv.writerow(REPORT_COLUMNS)

    def add(self, file: str, outcome: str, message: str = "") -> None:
        file, message = _bounded(file), _bounded(message)
        self._csv.writerow((_spreadsheet_safe(file), outcome, _spreadsheet_safe(message)))
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.counts[outcome] <= self.lines_kept_per_outcome:
            self.lines.append({"file": file, "outcome": outcome, "message": message})

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)

    @property
    def total_lines(self) -> int:
        return sum(self.counts.values())

    @property
    def truncated(self) -> bool:
        return self.total_lines > len(self.lines)

    def full_csv(self) -> str:
        """The whole report as CSV text (tests and small reports)."""
        self._full.seek(0)
        text = self._full.read()
        self._full.seek(0, io.SEEK_END)
        return text

    def save(self, job_id: int) -> str:
        """Writes the full report to storage (replacing an earlier one); returns its name."""
        name = report_storage_name(job_id)
        self._full.flush()
        self._full.seek(0)
        encoded = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
        try:
            for chunk in iter(lambda: self._full.read(1024 * 1024), ""):
                encoded.write(chunk.encode())
            encoded.seek(0)
            if default_storage.exists(name):
                default_storage.delete(name)
            return default_storage.save(name, File(encoded, name=name))
        finally:
            encoded.close()
            self._full.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._full.close()

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "counts": dict(self.counts),
            "classes_added": self.classes_added,
            "report": self.lines,
            "report_lines": self.total_lines,
            "report_truncated": self.truncated,
        }
