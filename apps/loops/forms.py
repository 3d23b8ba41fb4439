from django import forms

from apps.datasets.models import Dataset

INITIAL_MODEL_CHOICES = [
    ("train", "Train one from the dataset's labeled samples"),
    ("upload", "Upload a model archive (.zip)"),
    ("object_storage", "Import from object storage (s3://bucket/key)"),
]


class LoopForm(forms.Form):
    name = forms.CharField(max_length=120)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    algorithm_yaml = forms.CharField(
        label="Algorithm YAML",
        widget=forms.Textarea(attrs={"rows": 16, "class": "code"}),
        required=False,
        help_text="Base model and miner with hyperparameters. Empty: the default FPN + IBT.",
    )
    gate_min_f1 = forms.FloatField(
        label="Minimum F1", required=False, min_value=0, max_value=1, initial=0.5
    )
    gate_min_map = forms.FloatField(label="Minimum mAP", required=False, min_value=0, max_value=1)
    gate_min_f1_gain = forms.FloatField(
        label="Minimum F1 gain over the deployed version",
        required=False,
        min_value=-1,
        max_value=1,
        initial=0.01,
    )
    gate_per_class_gain = forms.BooleanField(label="Apply the gain to every class", required=False)
    gate_max_forgetting = forms.FloatField(
        label="Largest mAP drop on the regression set",
        required=False,
        min_value=0,
        max_value=1,
        initial=0.02,
    )
    gate_min_edge_images = forms.IntegerField(
        label="Fewest edge evaluation images to judge on",
        required=False,
        min_value=1,
        max_value=1_000_000,
        initial=1,
        help_text="With fewer labeled eval images from devices, the gate uses the regression set "
        "(on a few images one box moves F1 a lot).",
    )
    auto_evaluate = forms.BooleanField(initial=True, required=False)
    auto_deploy = forms.BooleanField(
        label="Deploy when the gate passes", initial=True, required=False
    )
    initial_model = forms.ChoiceField(
        choices=INITIAL_MODEL_CHOICES, widget=forms.RadioSelect, initial="train"
    )
    archive = forms.FileField(required=False, help_text="A model archive saved by ilportal.")
    object_storage_uri = forms.CharField(required=False, label="Object storage URI")

    def clean(self):
        cleaned = super().clean()
        choice = cleaned.get("initial_model")
        if choice == "upload" and not cleaned.get("archive"):
            self.add_error("archive", "Choose the model archive to upload.")
        if choice == "object_storage" and not cleaned.get("object_storage_uri"):
            self.add_error("object_storage_uri", "Give the s3:// location of the model.")
        return cleaned

    def gate(self) -> dict:
        data = self.cleaned_data
        min_metrics = {
            name: data[field]
            for name, field in (("f1", "gate_min_f1"), ("mAP", "gate_min_map"))
            if data.get(field) is not None
        }
        gain = data.get("gate_min_f1_gain")
        return {
            "gate_min_metrics": min_metrics,
            "gate_min_gain": {"f1": gain} if gain is not None else {},
            "gate_per_class_gain": data["gate_per_class_gain"],
            "gate_max_forgetting": data.get("gate_max_forgetting"),
            "gate_min_edge_images": data.get("gate_min_edge_images") or 1,
            "auto_evaluate": data["auto_evaluate"],
            "auto_deploy": data["auto_deploy"],
        }


class LoopSettingsForm(LoopForm):
    """The same settings without the dataset and the initial model, which are fixed."""

    retry_lost_jobs = forms.BooleanField(
        label="Start a training again when its worker died", required=False
    )

    def __init__(self, *args, loop=None, **kwargs):
        super().__init__(*args, **kwargs)
        for fixed in ("name", "dataset", "initial_model", "archive", "object_storage_uri"):
            del self.fields[fixed]
        if loop is not None and not self.is_bound:
            self.initial.update(
                description=loop.description,
                algorithm_yaml=loop.algorithm_yaml,
                gate_min_f1=loop.gate_min_metrics.get("f1"),
                gate_min_map=loop.gate_min_metrics.get("mAP"),
                gate_min_f1_gain=loop.gate_min_gain.get("f1"),
                gate_per_class_gain=loop.gate_per_class_gain,
                gate_max_forgetting=loop.gate_max_forgetting,
                gate_min_edge_images=loop.gate_min_edge_images,
                auto_evaluate=loop.auto_evaluate,
                auto_deploy=loop.auto_deploy,
                retry_lost_jobs=loop.retry_lost_jobs,
            )

    def clean(self):
        return forms.Form.clean(self)

    def settings(self) -> dict:
        return {
            **self.gate(),
            "description": self.cleaned_data["description"],
            "algorithm_yaml": self.cleaned_data["algorithm_yaml"],
            "retry_lost_jobs": self.cleaned_data["retry_lost_jobs"],
        }


class VersionUploadForm(forms.Form):
    archive = forms.FileField()


class VersionImportForm(forms.Form):
    object_storage_uri = forms.CharField(label="s3://bucket/key")


class ForceDeployForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
