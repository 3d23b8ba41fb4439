"""The Content-Security-Policy in Chromium: it blocks what it should (an injected inline script),
Django admin's pages work under it, and with FILE_SERVING=s3-presigned the images that the
browser is redirected to on the object store load. (Every other browser test also fails on any
line Chromium logs for a blocked script, style or image: see the `page` fixture.)"""

import pytest

from apps.datasets.thumbnails import ensure_thumbnail
from tests.factories import DatasetFactory, UserFactory, make_sample

pytestmark = pytest.mark.browser


def test_an_injected_inline_script_does_not_run(page, live_portal, log_in, csp_blocked):
    log_in(UserFactory(role="viewer"))
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__injected = true";
            document.body.appendChild(script);
        }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__injected") is None
    assert any("inline script" in line for line in csp_blocked), csp_blocked
    csp_blocked.clear()  # expected here; the fixture fails a test on any other


def test_django_admin_works_under_the_policy(page, live_portal, log_in):
    admin = UserFactory(role="admin")
    log_in(admin)
    page.goto(f"{live_portal.url}/admin/")
    page.goto(f"{live_portal.url}/admin/auth/user/")
    page.click("#action-toggle")  # admin's own script: select every row
    assert page.locator("input.action-select:checked").count() >= 1
    page.goto(f"{live_portal.url}/admin/auth/user/{admin.pk}/change/")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def live_portal_env(s3_storage, moto_endpoint):
    _, bucket = s3_storage
    return {
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": moto_endpoint,
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
        "S3_REGION": "us-east-1",
        "FILE_SERVING": "s3-presigned",
    }


def test_presigned_images_load_from_the_object_store(page, live_portal, log_in, moto_endpoint):
    dataset = DatasetFactory()
    samples = [make_sample(dataset, seed=seed) for seed in range(3)]
    ensure_thumbnail(samples[0])  # the others are made on first request, by the web process
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/datasets/{dataset.pk}/")
    images = page.locator("[data-testid=samples] img")
    assert images.count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=samples] img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )
    assert page.evaluate("document.querySelector('[data-testid=samples] img').currentSrc")
    page.goto(f"{live_portal.url}/label/samples/{samples[1].pk}/")
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=sample-image] img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
