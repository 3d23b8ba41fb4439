from django import forms
from django.conf import settings

from apps.datasets import importing, services
from apps.datasets.exporting import EXPORT_FORMAT_LABELS
from apps.datasets.models import SampleSource, SampleStatus, Split


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=120)
    class_names = forms.CharField(
        required=False, help_text="Comma-separated, in order (e.g. helmet, vest, cone)."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_class_names(self) -> list[str]:
        raw = self.cleaned_data["class_names"]
        return [name.strip() for name in raw.split(",") if name.strip()]


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        # An empty file among good ones is reported by name by the import, not refused here.
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else single(data, initial)


class UploadForm(forms.Form):
    files = MultipleFileField(help_text="Images, annotation files, or a zip of them.")
    format = forms.ChoiceField(choices=importing.FORMAT_CHOICES, initial=importing.AUTO)
    unknown_classes = forms.ChoiceField(
        choices=[
            (importing.UNKNOWN_CLASSES_REJECT, "Reject images that use them"),
            (importing.UNKNOWN_CLASSES_ADD, "Add new classes to the dataset"),
        ],
        initial=importing.UNKNOWN_CLASSES_REJECT,
        label="Classes the dataset does not have",
    )
    listed_without_labels = forms.ChoiceField(
        choices=importing.LISTED_WITHOUT_LABELS_CHOICES,
        initial=importing.LISTED_WITHOUT_LABELS_UNLABELED,
        label="VOC images listed in ImageSets with no XML",
        required=False,
        help_text="Datumaro and CVAT write no XML for an image without objects.",
    )

    def clean_listed_without_labels(self) -> str:
        return (
            self.cleaned_data["listed_without_labels"] or importing.LISTED_WITHOUT_LABELS_UNLABELED
        )

    def __init__(self, *args, may_add_classes: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.may_add_classes = may_add_classes
        if not may_add_classes:  # not offered; a posted "add" still gets the clear error below
            field = self.fields["unknown_classes"]
            field.widget.choices = [
                c for c in field.choices if c[0] != importing.UNKNOWN_CLASSES_ADD
            ]

    def clean_unknown_classes(self):
        choice = self.cleaned_data["unknown_classes"]
        if choice == importing.UNKNOWN_CLASSES_ADD and not self.may_add_classes:
            raise forms.ValidationError(services.ADD_CLASSES_REFUSED)
        return choice

    def clean_files(self):
        files = self.cleaned_data["files"]
        total = sum(upload.size for upload in files)
        if total > settings.DATASET_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The upload is {total:,} bytes, more than the limit of "
                f"{settings.DATASET_MAX_UPLOAD_BYTES:,}."
            )
        return files


def _with_any(choices):
    return [("", "any"), *choices]


class SampleFilterForm(forms.Form):
    status = forms.ChoiceField(choices=_with_any(SampleStatus.choices), required=False)
    split = forms.ChoiceField(choices=_with_any(Split.choices), required=False)
    source = forms.ChoiceField(choices=_with_any(SampleSource.choices), required=False)

    def __init__(self, *args, class_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["class"] = forms.ChoiceField(
            choices=_with_any([(name, name) for name in class_names]), required=False
        )


EXPORT_FORMATS = list(EXPORT_FORMAT_LABELS.items())
