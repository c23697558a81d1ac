"""The gateway's pages: the OpenAPI document (valid, and covering every route), /docs and the web page."""

import pytest
from openapi_spec_validator import validate

from services.gateway.app import create_app
from shared.config import load_settings
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

SAMPLE_JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def app():
    return create_app(load_settings(), metadata=FakeMetadata(), storage=FakeStorage(), upload=FakeUpload(202, b"{}"))


@pytest.fixture
def client(app):
    return app.test_client()


def test_openapi_json_serves_the_document_and_it_is_valid_openapi_3_1(client, openapi):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == openapi
    assert response.json["openapi"].startswith("3.1")
    validate(response.json)


def test_every_route_of_the_gateway_is_documented_and_every_documented_path_is_routed(app, openapi):
    urls = app.url_map.bind("gateway.test")
    documented = set()
    for path, item in openapi["paths"].items():
        for method in item:
            endpoint, _ = urls.match(path.replace("{job_id}", SAMPLE_JOB_ID), method=method.upper())
            documented.add(endpoint)
    routed = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routed == documented, f"undocumented: {routed - documented}; documented but gone: {documented - routed}"


def test_docs_page_renders_every_operation_and_schema(client, openapi):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path in openapi["paths"]:
        assert f"<code>{path}</code>" in page
    for name in openapi["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "<script" not in page  # rendered on the server: readable without JavaScript


def test_web_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'id="file-input"' in page.get_data(as_text=True)
    for asset, mimetype in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and response.mimetype == mimetype


def test_method_not_allowed_lists_the_allowed_methods(client):
    response = client.delete("/convert")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_openapi_lists_the_video_codecs_this_deployment_offers(openapi):
    def offered(setting: str) -> list[str]:
        app = create_app(
            load_settings(video_codecs=setting), metadata=FakeMetadata(), storage=FakeStorage(), upload=FakeUpload()
        )
        schema = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]["ConversionOptions"]
        return schema["properties"]["video_codec"]["enum"]

    assert offered("vp9,h264") == ["h264", "vp9"]
    assert offered("") == []
