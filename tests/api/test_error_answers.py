"""Bad input gets a clear 4xx JSON answer, never a 500: the crashes found by hand, and the same
class of input (non-object bodies, wrong types) on every JSON write of the API."""

import pytest

from tests.factories import DatasetFactory, UserFactory, make_sample

pytestmark = pytest.mark.django_db

NON_OBJECTS = ["[]", '["status"]', '"reviewed"', "5", "null", "true", "{not json"]


@pytest.fixture
def admin(client):
    client.force_login(UserFactory(role="admin"))
    return client


def test_a_dataset_without_class_names_is_a_400_naming_the_field(admin):
    response = admin.post("/api/v1/datasets/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 400
    assert "class_names" in response.json()


@pytest.mark.parametrize(
    "class_names", ["helmet,vest", [["a"]], [{"a": 1}], {"a": 1}, [""], [None]]
)
def test_class_names_must_be_a_list_of_names(admin, class_names):
    body = {"name": "x", "class_names": class_names}
    response = admin.post("/api/v1/datasets/", body, content_type="application/json")
    assert response.status_code == 400
    assert "class_names" in response.json()


def test_an_empty_class_list_is_fine(admin):
    body = {"name": "x", "class_names": []}
    response = admin.post("/api/v1/datasets/", body, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["class_names"] == []


@pytest.mark.parametrize("body", NON_OBJECTS)
def test_non_object_bodies_on_every_json_write(admin, body):
    dataset = DatasetFactory()
    sample = make_sample(dataset)
    for method, url in (
        ("post", "/api/v1/datasets/"),
        ("patch", f"/api/v1/datasets/{dataset.pk}/"),
        ("patch", f"/api/v1/samples/{sample.pk}/"),
        ("post", f"/api/v1/samples/{sample.pk}/annotations/"),
    ):
        response = getattr(admin, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (method, url, response.content)
        assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", ["", "nonsense", 5, None, ["reviewed"]])
def test_a_sample_status_must_be_one_of_the_choices(admin, status):
    sample = make_sample(DatasetFactory())
    response = admin.patch(
        f"/api/v1/samples/{sample.pk}/", {"status": status}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "status" in response.json()


@pytest.mark.parametrize(
    "boxes",
    [None, "x", [None], [[1, 2, 3, 4]], [{"class_name": "helmet"}],
     [{"class_name": "helmet", "x1": "a", "y1": 1, "x2": 2, "y2": 2}]],
)  # fmt: skip
def test_annotation_boxes_of_the_wrong_shape(admin, boxes):
    sample = make_sample(DatasetFactory())
    url = f"/api/v1/samples/{sample.pk}/annotations/"
    response = admin.post(url, {"boxes": boxes}, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "query",
    ["limit=x", "limit=0", "limit=501", "after=x", "after=-1", f"after={2**64}", "status=nope",
     "split=all", "class=%00", "class=" + "x" * 101],
)  # fmt: skip
def test_bad_sample_list_query_parameters_are_400(admin, query):
    dataset = DatasetFactory()
    make_sample(dataset)
    response = admin.get(f"/api/v1/datasets/{dataset.pk}/samples/?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()


def test_good_sample_list_query_parameters(admin):
    dataset = DatasetFactory()
    first, second = make_sample(dataset, 1), make_sample(dataset, 2)
    url = f"/api/v1/datasets/{dataset.pk}/samples/"
    page = admin.get(f"{url}?limit=1&status={first.status}&class=%20").json()
    assert [s["id"] for s in page["results"]] == [second.pk]
    assert page["next_after"] == second.pk
    rest = admin.get(f"{url}?limit=1&after={page['next_after']}").json()
    assert ([s["id"] for s in rest["results"]], rest["next_after"]) == ([first.pk], None)


def test_a_nul_in_a_page_filter_finds_nothing_instead_of_failing(admin):
    dataset = DatasetFactory()
    make_sample(dataset)
    response = admin.get(f"/datasets/{dataset.pk}/?class=%00&status=a%00")
    assert response.status_code == 200


def test_unknown_api_paths_answer_json_404(admin):
    for url in ("/api/v1/nothing/", "/api/v1/datasets/abc/", "/api/v1/samples/-1/"):
        response = admin.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_revoking_an_unknown_device_token_is_404(admin):
    assert admin.post("/accounts/devices/987654/revoke/").status_code == 404


def test_a_blank_accept_header_is_no_preference(admin):
    """Schemathesis sent `Accept:` with nothing after it; DRF answered 406 to that."""
    DatasetFactory()
    assert admin.get("/api/v1/datasets/", HTTP_ACCEPT="").status_code == 200
    assert admin.get("/api/v1/datasets/", HTTP_ACCEPT="  ").status_code == 200
    assert admin.get("/api/v1/datasets/", HTTP_ACCEPT="text/csv").status_code == 406


@pytest.mark.parametrize(
    "method, path",
    [("put", "/api/v1/datasets/"), ("delete", "/api/v1/loops/"), ("post", "/api/v1/jobs/")],
)
def test_a_method_a_path_does_not_have_is_405_not_a_role_refusal(client, method, path):
    for role in ("admin", "viewer"):
        client.force_login(UserFactory(role=role))
        response = getattr(client, method)(path, {}, content_type="application/json")
        assert response.status_code == 405, (role, response.content)
        assert "not allowed" in response.json()["detail"]
    client.logout()
    assert getattr(client, method)(path).status_code == 401  # who you are comes first


def test_a_method_a_path_has_is_still_refused_to_a_role_without_it(client):
    client.force_login(UserFactory(role="viewer"))
    response = client.post("/api/v1/datasets/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403 and "role" in response.json()["detail"]


def test_a_write_without_the_trailing_slash_is_redirected_keeping_its_method(admin):
    response = admin.post(
        "/api/v1/datasets?x=1", {"name": "x", "class_names": []}, content_type="application/json"
    )
    assert response.status_code == 308 and response["Location"] == "/api/v1/datasets/?x=1"
    followed = admin.post(
        "/api/v1/datasets",
        {"name": "x", "class_names": []},
        content_type="application/json",
        follow=True,
    )
    assert followed.status_code == 201, followed.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/?limit={}",
        "/api/v1/loops/?limit={}",
        "/api/v1/datasets/{ds}/samples/?limit={}",
    ],
)
@pytest.mark.parametrize("limit", ["0", "-1", "501"])
def test_a_page_size_out_of_bounds_is_400_on_every_list(admin, path, limit):
    dataset = DatasetFactory()
    response = admin.get(path.replace("{ds}", str(dataset.pk)).replace("{}", limit))
    assert response.status_code == 400, response.content
    assert "limit" in str(response.json())
