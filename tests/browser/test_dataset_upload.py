import io
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.datasets.models import Sample
from tests.datasets.conftest import coco_json
from tests.factories import DatasetFactory, UserFactory, image_bytes

pytestmark = pytest.mark.browser


def test_a_labeler_uploads_a_zip_and_sees_the_samples_appear(page, log_in, live_portal, tmp_path):
    dataset = DatasetFactory(name="yard")
    archive = tmp_path / "yard.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("images/a.png", image_bytes(1, (120, 90)))
        bundle.writestr("images/b.png", image_bytes(2, (120, 90)))
        bundle.writestr("images/broken.png", b"not really a png")
        bundle.writestr(
            "annotations.json",
            coco_json([("images/a.png", 120, 90)], [(0, "cone", [10, 10, 40, 50])], ["cone"]),
        )
    archive.write_bytes(buffer.getvalue())

    log_in(UserFactory(role="labeler"))
    page.click("text=Datasets")
    page.click("text=yard")
    page.click("[data-testid=upload-link]")
    page.evaluate("window.__noReload = true")
    page.set_input_files("input[name=files]", str(archive))
    page.click("[data-testid=upload-submit]")

    expect(page.locator("[data-testid=upload-progress]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("[data-testid=import-progress]")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    expect(page.locator("[data-testid=import-summary]")).to_have_text(
        "2 accepted, 0 duplicates, 1 rejected, 0 warnings, 0 ignored"
    )
    report = page.locator("[data-testid=import-report]")
    expect(report.locator("tr.rejected")).to_contain_text("images/broken.png")
    expect(report.locator("tr.rejected")).to_contain_text("not an image")
    assert page.evaluate("window.__noReload") is True
    full_report = page.locator("[data-testid=import-full-report] a")
    expect(full_report).to_be_visible()
    with page.expect_download() as download:
        full_report.click()
    assert "images/broken.png" in Path(download.value.path()).read_text()

    page.click("[data-testid=back-to-dataset]")
    thumbs = page.locator("[data-testid=samples] figure.thumb")
    expect(thumbs).to_have_count(2)
    expect(page.locator("[data-testid=samples] svg rect")).to_have_count(1)
    # Thumbnails load (made on first request) and are real images.
    first = thumbs.first.locator("img")
    expect(first).to_have_js_property("complete", True)
    assert first.evaluate("img => img.naturalWidth") > 0
    assert Sample.objects.filter(dataset=dataset).count() == 2
