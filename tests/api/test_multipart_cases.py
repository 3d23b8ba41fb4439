"""Hand-written cases for the multipart operations, whose file fields Schemathesis fills with
text: a real image and real annotation files, sent through Schemathesis so that each answer is
validated against the live schema like the fuzzed ones."""

import json

import pytest
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts import services as accounts
from tests.api.test_schemathesis import admin_session, api_schema  # noqa: F401 (fixtures)
from tests.factories import DatasetFactory, image_bytes

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SAMPLES = "/api/v1/datasets/{dataset_id}/samples/"
IMPORTS = "/api/v1/datasets/{dataset_id}/imports/"


def _send(api_schema, path, dataset, body, auth):  # noqa: F811
    case = api_schema[path]["POST"].Case(
        path_parameters={"dataset_id": dataset.pk}, body=body, media_type="multipart/form-data"
    )
    return case.call_and_validate(checks=CHECKS, **auth)


@pytest.fixture
def dataset(db):
    return DatasetFactory(name="multipart")


def test_a_sample_upload_with_boxes_then_its_duplicate(api_schema, admin_session, dataset):  # noqa: F811
    image = image_bytes(7)
    boxes = json.dumps([{"class_name": "helmet", "x1": 1, "y1": 2, "x2": 30, "y2": 40}])
    body = {"image": image, "boxes": boxes, "split": "train"}
    first = _send(api_schema, SAMPLES, dataset, body, admin_session)
    assert first.status_code == 201, first.text
    assert first.json()["boxes"][0]["class_name"] == "helmet"
    again = _send(api_schema, SAMPLES, dataset, {"image": image}, admin_session)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"image": b"not an image"},
        {"image": image_bytes(1), "boxes": "not json"},
        {"image": image_bytes(2), "boxes": '{"class_name": "helmet"}'},
        {"image": image_bytes(3), "boxes": '[{"class_name": "dragon", "x1": 1, "y1": 1, '
         '"x2": 5, "y2": 5}]'},
        {"image": image_bytes(4), "split": "nonsense"},
    ],
)  # fmt: skip
def test_bad_sample_uploads_get_a_documented_400(api_schema, admin_session, dataset, body):  # noqa: F811
    response = _send(api_schema, SAMPLES, dataset, body, admin_session)
    assert response.status_code == 400, response.text


def test_an_oversize_image_gets_413_before_it_is_read(api_schema, admin_session, dataset, settings):  # noqa: F811
    settings.DATASET_MAX_IMAGE_BYTES = 100
    response = _send(api_schema, SAMPLES, dataset, {"image": image_bytes(5)}, admin_session)
    assert response.status_code == 413


def test_an_import_of_an_image_and_its_labels(api_schema, admin_session, dataset):  # noqa: F811
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "helmet"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}],
    }
    body = {"files": [image_bytes(8), json.dumps(coco).encode()], "format": "coco"}
    response = _send(api_schema, IMPORTS, dataset, body, admin_session)
    assert response.status_code == 202, response.text
    assert response.json()["job"]["kind"] == "dataset_import"


def test_a_device_token_uploads_a_sample_but_may_not_import_new_classes(api_schema, dataset):  # noqa: F811
    raw = accounts.create_device_token(name="cam", created_by=None, all_loops=True).raw_token
    device = {"headers": {"Authorization": f"Bearer {raw}"}}
    sample = _send(api_schema, SAMPLES, dataset, {"image": image_bytes(9)}, device)
    assert sample.status_code == 201
    assert sample.json()["source"] == "device"
    refused = _send(
        api_schema, IMPORTS, dataset, {"files": [image_bytes(10)], "unknown_classes": "add"}, device
    )
    assert refused.status_code == 403


def test_anonymous_uploads_get_a_documented_401(api_schema, dataset):  # noqa: F811
    for path, body in ((SAMPLES, {"image": image_bytes(11)}), (IMPORTS, {"files": [b"x"]})):
        assert _send(api_schema, path, dataset, body, {}).status_code == 401
