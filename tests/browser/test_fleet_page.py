import urllib.request

import pytest
from playwright.sync_api import expect

from tests.edge.conftest import edge_archive, edge_loop, scene_png  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_scopes_a_new_token_and_sees_the_device_on_the_fleet_page(
    page,
    log_in,
    live_portal,
    edge_loop,  # noqa: F811  (the fixture imported above)
    admin_user,
    tmp_path,
):
    log_in(admin_user)
    page.goto(f"{live_portal.url}/accounts/devices/")
    page.fill("input[name=name]", "gate-camera")
    page.click("button:has-text('Create token')")
    expect(page.locator(".errorlist")).to_contain_text("Choose the loops")
    page.fill("input[name=name]", "gate-camera")
    page.check(f"input[name=loops][value='{edge_loop.pk}']")
    page.click("button:has-text('Create token')")
    raw = page.locator("[data-testid=new-token]").inner_text().strip()
    expect(page.locator("table")).to_contain_text("edge-line")

    request = urllib.request.Request(
        f"{live_portal.url}/api/v1/loops/{edge_loop.pk}/predict/",
        data=scene_png(1),
        method="POST",
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "image/png"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200

    page.click("nav >> text=Fleet")
    section = page.locator(f"[data-testid=fleet-loop-{edge_loop.pk}]")
    expect(section).to_contain_text("gate-camera")
    expect(section).to_contain_text("v1")
    expect(section).to_contain_text("1 hard queued")
    page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
    page.click(f"[data-testid=fleet-loop-{edge_loop.pk}] >> text=Intake policy")
    page.check("input[name=mode][value=nothing]")
    page.click("button:has-text('Save')")
    expect(page.locator(".flash")).to_contain_text("saved")
