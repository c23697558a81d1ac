"""JSON log lines (``shared.logs``): the job context, gunicorn's access lines, and a request's job id."""

from __future__ import annotations

import datetime
import json
import logging
import logging.config

import pytest
from flask import Flask
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from shared.gunicorn_logger import AccessLogger
from shared.http import install_job_log_context
from shared.logs import ACCESS_LOGGER, JsonFormatter, gunicorn_logconfig, job_context

JOB_ID = "0123456789abcdef0123456789abcdef"


def record(name: str = "siphon.test", msg: str = "hello %s", args=("world",), **extra) -> logging.LogRecord:
    entry = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    entry.__dict__.update(extra)
    return entry


def access_record(path: str, status: int = 200) -> logging.LogRecord:
    atoms = SafeAtoms({"m": "GET", "U": path, "s": status, "B": 42, "D": 1500, "h": "127.0.0.1"})
    return record(ACCESS_LOGGER, '%(h)s "%(r)s" %(s)s', (atoms,))


def line(entry: logging.LogRecord) -> dict:
    return json.loads(JsonFormatter("gateway").format(entry))


def test_a_record_is_one_json_object_with_service_logger_and_message():
    entry = line(record())
    assert isinstance(entry.pop("ts"), float)
    assert entry == {"level": "info", "service": "gateway", "logger": "siphon.test", "msg": "hello world"}


def test_records_inside_a_job_context_carry_the_job_id_and_outside_do_not():
    with job_context(JOB_ID):
        assert line(record())["job_id"] == JOB_ID
    assert "job_id" not in line(record())


def test_an_explicit_job_id_wins_over_the_context():
    with job_context("f" * 32):
        assert line(record(job_id=JOB_ID))["job_id"] == JOB_ID


def test_an_access_line_names_the_request_and_the_job_its_path_holds():
    entry = line(access_record(f"/download/{JOB_ID}.mp3", 206))
    assert entry["msg"] == f"GET /download/{JOB_ID}.mp3 206"
    assert (entry["method"], entry["status"], entry["bytes"], entry["seconds"]) == ("GET", 206, 42, 0.0015)
    assert entry["job_id"] == JOB_ID


@pytest.mark.parametrize("path", ["/healthz", "/status/" + "a" * 33, "/status/../x", "/status/" + "0" * 31])
def test_an_access_line_without_a_job_id_in_its_path_has_none(path):
    assert "job_id" not in line(access_record(path))


def test_an_access_line_keeps_only_the_start_of_a_huge_path():
    entry = line(access_record("/status/" + "x" * 1_000_000, 404))
    assert len(entry["path"]) == 256 and len(entry["msg"]) < 300


def test_gunicorn_logconfig_is_a_valid_dictconfig_that_sends_gunicorn_lines_to_the_root_as_json():
    config = gunicorn_logconfig("upload", "WARNING")
    assert config["formatters"]["json"] == {"()": JsonFormatter, "service": "upload"}
    assert config["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    for name in ("gunicorn.error", ACCESS_LOGGER):
        assert config["loggers"][name]["propagate"] is True and config["loggers"][name]["handlers"] == []
    logging.config.dictConfig({**config, "root": {"level": "WARNING", "handlers": []}, "loggers": {}})  # no error


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (inside the request), as the real handler does."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter("gateway"))
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


def test_a_request_naming_a_job_logs_with_its_job_id():
    app = Flask(__name__)
    install_job_log_context(app)
    logger, lines = logging.getLogger("siphon.test.request"), JsonLines()
    logger.addHandler(lines)

    @app.get("/status/<job_id>")
    def status(job_id):
        logger.warning("looking up the job")
        return "ok"

    try:
        app.test_client().get(f"/status/{JOB_ID}")
        app.test_client().get("/status/not-a-job")
    finally:
        logger.removeHandler(lines)
    assert [entry.get("job_id") for entry in lines.lines] == [JOB_ID, None]


class GunicornResponse:
    """What gunicorn's access log reads of a response (``gunicorn.http.wsgi.Response``)."""

    status = "206 Partial Content"
    status_code = 206
    sent = 100
    headers = [("Content-Type", "audio/mpeg")]


def test_the_access_logger_gives_the_json_line_everything_it_names(capsys):
    config = Config()
    config.set("accesslog", "-")  # gunicorn's own plain-text line too: the atoms must format there as well
    logger = AccessLogger(config)
    lines = JsonLines()
    logging.getLogger(ACCESS_LOGGER).addHandler(lines)
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": f'/download/{JOB_ID}.mp3"'}
    try:
        logger.access(GunicornResponse(), None, environ, datetime.timedelta(seconds=1, microseconds=2500))
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(lines)
    [entry] = lines.lines
    assert entry["msg"] == f'GET /download/{JOB_ID}.mp3" 206', "the path as sent: JSON escapes the quote itself"
    assert (entry["method"], entry["status"], entry["bytes"], entry["seconds"]) == ("GET", 206, 100, 1.0025)
    assert (entry["remote"], entry["job_id"]) == ("10.0.0.7", JOB_ID)
    assert capsys.readouterr().out.startswith("10.0.0.7 - - "), "atoms the JSON line does not use read '-'"


def test_access_lines_follow_the_access_loggers_level():
    logger = AccessLogger(Config())
    access, lines = logging.getLogger(ACCESS_LOGGER), JsonLines()
    access.addHandler(lines)
    level = access.level
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "PATH_INFO": f"/status/{JOB_ID}"}
    try:
        logger.access(GunicornResponse(), None, environ, datetime.timedelta(microseconds=900))
        access.setLevel(logging.WARNING)  # an operator's logconfig turning the access lines off
        logger.access(GunicornResponse(), None, environ, datetime.timedelta(microseconds=900))
    finally:
        access.setLevel(level)
        access.removeHandler(lines)
    assert [entry["path"] for entry in lines.lines] == [f"/status/{JOB_ID}"]
