"""In a real browser: a phone photo (EXIF-turned JPEG) looks the same as the portal trains on.

The browser applies EXIF orientation itself (`image-orientation: from-image`); the stored
image carries none left, so the page, the thumbnail grid's box overlay and the training data
all use one frame.
"""

import pytest

from apps.datasets import services
from apps.datasets.formats.base import LabeledBox
from tests.datasets.test_exif import OBJECT, SHOWN_SIZE, camera_jpeg
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.browser

PIXEL_AND_SIZE = """async ([url, x, y]) => {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    return {
        width: image.naturalWidth,
        height: image.naturalHeight,
        pixel: Array.from(context.getImageData(x, y, 1, 1).data),
    };
}"""


def test_the_browser_shows_a_turned_photo_as_stored_with_its_box_on_the_object(
    page, log_in, live_portal, tmp_path
):
    dataset = DatasetFactory(name="phones")
    samples = [
        services.store_sample(
            dataset,
            camera_jpeg(orientation),
            original_name=f"IMG_{orientation}.jpg",
            source="upload",
            boxes=[LabeledBox("cone", *OBJECT)],
        ).sample
        for orientation in (3, 6, 8)
    ]
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/datasets/{dataset.pk}/")
    centre_x, centre_y = (OBJECT[0] + OBJECT[2]) // 2, (OBJECT[1] + OBJECT[3]) // 2
    for sample in samples:
        for view in ("image", "thumbnail"):
            url = f"/datasets/samples/{sample.pk}/{view}/"
            shown = page.evaluate(PIXEL_AND_SIZE, [url, centre_x, centre_y])
            assert (shown["width"], shown["height"]) == SHOWN_SIZE, (sample, view)
            red, green, blue, _ = shown["pixel"]
            assert red > 170 and green < 80 and blue < 80, (sample, view, shown["pixel"])
        # The grid draws the box over the thumbnail in the sample's frame: the picture's.
        overlay = page.locator(f"figure[data-sample-id='{sample.pk}'] svg")
        assert overlay.get_attribute("viewBox") == "0 0 48 32"
        rect = overlay.locator("rect")
        assert [float(rect.get_attribute(a)) for a in ("x", "y", "width", "height")] == [
            OBJECT[0],
            OBJECT[1],
            OBJECT[2] - OBJECT[0],
            OBJECT[3] - OBJECT[1],
        ]
    page.screenshot(path=str(tmp_path / "phones.png"), full_page=True)
