import zipfile

import pytest
from playwright.sync_api import expect

from tests.factories import DatasetFactory, UserFactory, make_sample

pytestmark = pytest.mark.browser


def test_a_viewer_exports_a_dataset_as_a_job_and_downloads_the_zip(page, log_in, live_portal):
    dataset = DatasetFactory(name="yard")
    make_sample(dataset, 1, boxes=[("helmet", 1, 1, 20, 20)], split="train")
    make_sample(dataset, 2, boxes=[], split="eval")

    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/datasets/{dataset.pk}/")
    page.select_option("[data-testid=export-form] select[name=format]", "voc")
    page.click("[data-testid=export-submit]")

    page.wait_for_url("**/datasets/exports/*/")
    expect(page.locator("[data-testid=export-progress]")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    link = page.locator("[data-testid=export-download]")
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "yard-voc.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
    assert "labelmap.txt" in names and "ImageSets/Main/train.txt" in names
    assert len([n for n in names if n.startswith("JPEGImages/")]) == 2
