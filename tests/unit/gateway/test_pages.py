"""The gateway's pages: the OpenAPI document (valid, and covering every route), /docs and the web page."""

import copy

import pytest
from openapi_spec_validator import validate

from services.gateway.app import create_app
from services.gateway.pages import with_offered_formats
from shared.config import load_settings
from tests.unit.fakes import FakeMetadata, FakeStorage, FakeUpload

SAMPLE_JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def app():
    return create_app(load_settings(), metadata=FakeMetadata(), storage=FakeStorage(), upload=FakeUpload(202, b"{}"))


@pytest.fixture
def client(app):
    return app.test_client()


AUDIO_FORMATS = ["mp3", "m4a", "opus", "ogg", "flac", "wav"]


def conversion_options(document: dict) -> dict:
    return document["components"]["schemas"]["ConversionOptions"]["properties"]


def test_openapi_json_serves_the_document_and_it_is_valid_openapi_3_1(openapi):
    app = create_app(
        load_settings(VIDEO_CODECS="h264,vp9"),
        metadata=FakeMetadata(),
        storage=FakeStorage(),
        upload=FakeUpload(202, b"{}"),
    )
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == with_offered_formats(openapi, ("h264", "vp9"))
    assert conversion_options(response.json)["video_codec"]["enum"] == ["h264", "vp9"]
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


def test_the_offered_formats_are_the_audio_ones_and_each_video_format_with_its_offered_codecs(openapi):
    properties = conversion_options(with_offered_formats(openapi, ("h264", "vp9")))
    assert properties["format"]["enum"] == [*AUDIO_FORMATS, "mp4", "webm", "mkv"]
    assert properties["format"]["x-video-codecs"] == {"mp4": ["h264"], "webm": ["vp9"], "mkv": ["h264", "vp9"]}
    assert properties["video_codec"]["enum"] == ["h264", "vp9"]


def test_a_video_format_none_of_whose_codecs_is_offered_is_not_offered(openapi):
    properties = conversion_options(with_offered_formats(openapi, ("av1",)))
    assert properties["format"]["enum"] == [*AUDIO_FORMATS, "webm", "mkv"]
    assert properties["format"]["x-video-codecs"] == {"webm": ["av1"], "mkv": ["av1"]}


def test_without_video_codecs_only_audio_formats_are_offered_and_the_document_stays_valid(openapi):
    before = copy.deepcopy(openapi)
    offered = with_offered_formats(openapi, ())
    properties = conversion_options(offered)
    assert properties["format"]["enum"] == AUDIO_FORMATS
    assert properties["format"]["x-video-codecs"] == {}
    assert properties["video_codec"]["enum"] == []
    validate(offered)
    assert openapi == before  # the loaded document is not changed


def test_openapi_lists_the_video_codecs_this_deployment_offers(openapi):
    def offered(setting: str) -> list[str]:
        app = create_app(
            load_settings(video_codecs=setting), metadata=FakeMetadata(), storage=FakeStorage(), upload=FakeUpload()
        )
        schema = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]["ConversionOptions"]
        return schema["properties"]["video_codec"]["enum"]

    assert offered("vp9,h264") == ["h264", "vp9"]
    assert offered("") == []
