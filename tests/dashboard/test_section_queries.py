"""The loop sections other apps add (trigger rules, labeling queue, devices) keep the home page
and the loop page at a fixed number of queries, whatever the number of loops, rules, decisions,
devices and intake records."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.page_data import add_loop_activity, build

pytestmark = pytest.mark.django_db


def counted(client, url: str) -> tuple[int, str]:
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response.content.decode()


def test_home_and_loop_page_sections_in_a_fixed_number_of_queries(client, admin_user):
    client.force_login(admin_user)
    small = build(samples=120, versions=3, jobs=4)
    small_loops = add_loop_activity(small, loops=1, rules=3, decisions=3, devices=1, intake=5)
    home_small, _ = counted(client, "/")
    loop_small, _ = counted(client, f"/loops/{small_loops[0].pk}/")
    big = build(samples=500, versions=20, jobs=30, seed=8)
    big_loops = add_loop_activity(
        big, loops=4, rules=9, decisions=60, devices=6, intake=300, seed=8
    )
    home_big, home = counted(client, "/")
    loop_big, page = counted(client, f"/loops/{big_loops[0].pk}/")

    assert home_big <= home_small, (home_small, home_big)
    assert loop_big <= loop_small, (loop_small, loop_big)
    assert home_big <= 25 and loop_big <= 25, (home_big, loop_big)
    # The sections were there to be counted: every loop's card and the loop page show them.
    for loop in small_loops + big_loops:
        assert f'data-testid="waiting-{loop.pk}"' in home
        assert f'data-testid="label-progress-{loop.pk}"' in home
        assert f'data-testid="last-decision-{loop.pk}"' in home
        assert f'data-testid="devices-{loop.pk}"' in home
    assert 'data-testid="loop-triggers"' in page and 'data-testid="loop-devices"' in page
    assert 'id="labels-chart-data"' in page and 'id="intake-chart-data"' in page


def test_the_fleet_page_draws_every_loops_volumes_in_a_fixed_number_of_queries(client, admin_user):
    client.force_login(admin_user)
    small = build(samples=60, versions=2)
    add_loop_activity(small, loops=1, devices=1, intake=3)
    few, _ = counted(client, "/edge/")
    big = build(samples=61, versions=2, seed=9)
    add_loop_activity(big, loops=3, devices=8, intake=40, seed=9)
    many, page = counted(client, "/edge/")
    assert page.count('data-testid="fleet-volumes-') == 4
    # the 24 h intake counts are one query per loop (the fleet page's own)
    assert many - few <= 3, (few, many)
