"""Fuzzing the HTTP API: schemathesis generates requests from ``/openapi.json`` for every operation,
and hypothesis throws arbitrary JSON at the run routes. No request may produce a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from service_helpers import png_data_uri


@pytest.fixture
def api_client(make_client: Callable[..., TestClient]) -> TestClient:
    """A full service on seeded weights at tiny operating sizes; URL fetches time out after 2 s."""
    return make_client(fetch_timeout=2.0)


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def test_no_operation_answers_with_a_server_error(api_client: TestClient) -> None:
    """Requests generated from the service's own OpenAPI document, spread over every operation."""
    schema = schemathesis.openapi.from_dict(api_client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations))
        case = data.draw(operation.as_strategy())
        request = case.as_transport_kwargs(base_url="http://testserver")
        request.pop("base_url", None)
        _numbers_as_text(request)
        response = api_client.request(**request)
        seen.add(operation.label)
        case.validate_response(response, checks=[not_a_server_error])

    run()
    assert len(seen) >= len(operations) // 2  # the draw really spread over the API


def _numbers_as_text(request: dict) -> None:
    """schemathesis puts numeric multipart fields (rembg's af, ab, ae) into ``files`` as ints, which the
    HTTP client cannot encode; on the wire every form field is text anyway."""
    files = request.get("files")
    if files:
        request["files"] = [
            (name, (part[0], str(part[1]), *part[2:]) if isinstance(part[1], int | float) else part)
            for name, part in files
        ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "image_url",
    "model",
    "operating_resolution",
    "output_format",
    "refine_foreground",
    "sync_mode",
    "output_mask",
]


@FUZZ
@given(
    extra=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), JSON, max_size=6),
    keep_image=st.booleans(),
    route=st.sampled_from(["/fal-ai/birefnet/v2", "/fal-ai/birefnet", "/queue/fal-ai/birefnet/v2"]),
)
def test_arbitrary_json_bodies(api_client, extra: dict, keep_image: bool, route: str) -> None:
    body = {"image_url": png_data_uri(32, 24), **extra} if keep_image else extra
    response = api_client.post(route, json=body)
    assert response.status_code < 500, (body, response.text)
    assert response.headers.get("x-fal-request-id")
