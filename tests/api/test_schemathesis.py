"""Every operation of the live OpenAPI schema, fuzzed by Schemathesis as an admin: no 5xx,
every response (status, content type, body) is one the schema documents, and input the schema
calls invalid is refused.

Operations are read from the schema, so endpoints added later are covered without a change here.
Each gets a bounded number of valid and of invalid examples, derandomized: a run is repeatable."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts import services as accounts
from tests.factories import DatasetFactory, UserFactory, make_sample

EXAMPLES_PER_MODE = 12
DEVICE_EXAMPLES_PER_MODE = 4
CSRF = "c" * 32
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, from the same generator that serves the schema."""
    from drf_spectacular.generators import SchemaGenerator

    spec = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


@pytest.fixture
def api_schema(db):
    # In-process WSGI, inside the test's transaction: like Django's test client, keep the
    # request signals from closing the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_session(client):
    """An admin's session cookies and CSRF header, and a dataset with labeled samples to find."""
    dataset = DatasetFactory(name="fuzzed")
    for seed in range(3):
        make_sample(dataset, seed, boxes=[("helmet", 1, 1, 20, 20)])
    client.force_login(UserFactory(role="admin"))
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF}
    return {"cookies": cookies, "headers": {"X-CSRFToken": CSRF}}


def test_the_live_schema_lists_the_operations_fuzzed_here(api_schema):
    live = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert live == set(_operations())


@pytest.mark.parametrize(("method", "path"), _operations())
def test_operation_answers_as_documented(method, path, api_schema, admin_session):
    _fuzz(api_schema[path][method], admin_session, EXAMPLES_PER_MODE)


@pytest.mark.parametrize(("method", "path"), _operations())
def test_operation_answers_a_device_token_as_documented(method, path, api_schema, db):
    """Devices may do little: their 401/403/404 answers must be documented too."""
    issued = accounts.create_device_token(name="fuzzer", created_by=None)
    issued.device_token.all_loops = True
    issued.device_token.save()
    auth = {"headers": {"Authorization": f"Bearer {issued.raw_token}"}}
    _fuzz(api_schema[path][method], auth, DEVICE_EXAMPLES_PER_MODE)


def _fuzz(operation, auth: dict, examples_per_mode: int) -> None:
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=2 * examples_per_mode,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case):
        case.call_and_validate(checks=CHECKS, **auth)

    answers_as_documented()
