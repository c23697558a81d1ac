"""The ``siphon`` commands (click).

Exit codes: 0 all done; 1 a job failed or the server refused a request (the reason is printed as
``<code>: <message>``); 2 wrong usage; 3 the server does not support the command (yet); 4 the
server cannot be reached; 5 a job did not finish within ``--timeout``; 6 the server wants an API
key (``--api-key`` or ``SIPHON_API_KEY``) or refused the one given.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import click

from siphon_cli.api import ApiError, CliError, SiphonClient
from siphon_cli.follow import TERMINAL_STATES, FollowTimeout, follow_job
from siphon_cli.keys import check_key_name, new_key
from siphon_cli.progress import job_bars, show_job, transfer_bars

DEFAULT_URL = "http://localhost:5000"
DEFAULT_TIMEOUT_SECONDS = 1800


class JobFailed(CliError):
    """The job ended without an MP3 (failed, cancelled, expired); ``code`` says why."""

    exit_code = 1

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Submitted:
    source: Path
    job_id: str


def reports_errors(command):
    """Print a CliError as ``siphon: <code>: <message>`` on stderr and exit with its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            click.echo(f"siphon: {describe(exc)}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def describe(exc: CliError) -> str:
    code = getattr(exc, "code", None)
    return f"{code}: {exc.message}" if code else exc.message


API_KEY_HELP = "API key, sent as 'Authorization: Bearer <key>' (or set SIPHON_API_KEY)."


def use_api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--api-key`` given after a command name: the client sends it instead of the group's."""
    if value:
        ctx.find_object(SiphonClient).api_key = value


def takes_api_key(command):
    """``--api-key`` on a command too, so that ``siphon convert --api-key KEY ...`` works."""
    return click.option("--api-key", metavar="KEY", expose_value=False, callback=use_api_key, help=API_KEY_HELP)(
        command
    )


@click.group()
@click.option(
    "--url",
    envvar="SIPHON_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The siphon server (or set SIPHON_URL).",
)
@click.option("--api-key", envvar="SIPHON_API_KEY", metavar="KEY", help=API_KEY_HELP)
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Convert videos to MP3 with a siphon server."""
    ctx.obj = SiphonClient(url, api_key=api_key or None)


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the outputs (default: next to each input).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for each job to finish.",
)
@click.option(
    "-F",
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=VALUE",
    callback=lambda ctx, param, values: parse_fields(values),
    help="A form field sent with each file, e.g. -F bitrate=192 (conversion options). Repeatable.",
)
@click.option(
    "--format",
    "output_format",
    metavar="FORMAT",
    help="Output format: mp3 (the default), m4a, opus, ogg, flac, wav, or video: mp4, webm, mkv.",
)
@click.option("--video-codec", metavar="CODEC", help="Video codec: h264, hevc (mp4, mkv), vp9, av1 (webm, mkv).")
@click.option("--height", type=click.IntRange(min=1), help="Largest output height of a video, pixels (never upscaled).")
@click.option("--progress/--no-progress", default=True, help="Draw progress bars on stderr.")
@takes_api_key
@click.pass_obj
@reports_errors
def convert(
    client: SiphonClient,
    files: tuple[Path, ...],
    output_dir: Path | None,
    timeout: float,
    fields: dict[str, str],
    output_format: str | None,
    video_codec: str | None,
    height: int | None,
    progress: bool,
) -> None:
    """Upload FILES, follow their jobs, and download each output (MP3 unless --format says).

    Prints the path of each output on stdout; a file that fails is reported on stderr with its
    error code, and the exit code is then non-zero. --format, --video-codec and --height are the
    API's ``format``, ``video_codec`` and ``height`` (the server checks them: a bad value is its 400).
    """
    named = {"format": output_format, "video_codec": video_codec, "height": height}
    fields = {**fields, **{name: str(value) for name, value in named.items() if value is not None}}
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
    submitted, errors = submit_all(client, files, fields, progress)
    for job in submitted:
        try:
            mp3 = finish(client, job, output_dir, timeout, progress)
        except (JobFailed, ApiError, FollowTimeout) as exc:
            errors.append((job.source, exc))
            continue
        click.echo(str(mp3))
    for source, exc in errors:
        click.echo(f"siphon: {source.name}: {describe(exc)}", err=True)
    if errors:
        sys.exit(errors[0][1].exit_code)


def parse_fields(values: tuple[str, ...]) -> dict[str, str]:
    """``("bitrate=192", ...)`` → ``{"bitrate": "192", ...}``; a value without ``=`` is a usage error."""
    fields = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="-F/--field")
        fields[name] = text
    return fields


def submit_all(client: SiphonClient, files: tuple[Path, ...], fields: dict[str, str], progress: bool):
    """Upload every file (a byte bar each); return the jobs and the (file, error) of refused ones."""
    submitted, errors = [], []
    with transfer_bars(progress) as bars:
        for source in files:
            task = bars.add_task(f"upload {source.name}", total=source.stat().st_size)
            try:
                body = client.submit(
                    source, lambda done, total, t=task: bars.update(t, completed=done, total=total), fields
                )
            except ApiError as exc:
                errors.append((source, exc))
                continue
            submitted.append(Submitted(source, body["job_id"]))
    return submitted, errors


def finish(client: SiphonClient, job: Submitted, output_dir: Path | None, timeout: float, progress: bool) -> Path:
    """Follow ``job`` to its end and download its audio (see :func:`output_path`), or raise JobFailed."""
    with job_bars(progress) as bars:
        task = bars.add_task(f"convert {job.source.name}", total=None, state="queued")
        for body in follow_job(client, job.job_id, timeout):
            show_job(bars, task, body)
    if body["status"] != "completed":
        error = body.get("error") or {"code": body["status"], "message": body.get("message", "")}
        raise JobFailed(error["code"], error["message"])
    # The download URL's extension is the output format's (.mp3 unless the job asked for another).
    extension = PurePosixPath(urlsplit(body["download_url"]).path).suffix or ".mp3"
    destination = output_path(job.source, output_dir, extension)
    with transfer_bars(progress) as bars:
        task = bars.add_task(f"download {destination.name}", total=None)
        return client.download(
            body["download_url"], destination, lambda done, total: bars.update(task, completed=done, total=total)
        )


def output_path(source: Path, output_dir: Path | None, extension: str = ".mp3") -> Path:
    """``<stem><extension>`` next to ``source`` or in ``output_dir``; never ``source`` itself."""
    target = (output_dir or source.parent) / f"{source.stem}{extension}"
    if target.resolve() == source.resolve():
        target = target.with_name(f"{source.stem}.siphon{extension}")
    return target


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status body as JSON.")
@takes_api_key
@click.pass_obj
@reports_errors
def status(client: SiphonClient, job_id: str, as_json: bool) -> None:
    """Show where job JOB_ID is (exit 1 if it failed)."""
    body = client.status(job_id)
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"{body['job_id']}  {body['status']}  {body.get('message', '')}")
        if "progress" in body:
            click.echo(f"progress: {body['progress']}%")
        if body.get("download_url"):
            click.echo(f"download: {body['download_url']}")
        if body.get("error"):
            click.echo(f"error: {body['error']['code']}: {body['error']['message']}")
    if body["status"] in TERMINAL_STATES - {"completed"}:
        sys.exit(JobFailed.exit_code)


@cli.command()
@takes_api_key
@click.pass_obj
@reports_errors
def jobs(client: SiphonClient) -> None:
    """List the server's jobs, newest first."""
    listing = client.jobs()
    rows = listing.get("jobs", []) if isinstance(listing, dict) else listing
    for job in rows:
        name = job.get("original_filename") or job.get("filename") or ""
        click.echo(f"{job.get('job_id', '?')}  {job.get('status', '?'):<10}  {name}")


@cli.command()
@click.argument("job_id")
@takes_api_key
@click.pass_obj
@reports_errors
def cancel(client: SiphonClient, job_id: str) -> None:
    """Stop job JOB_ID."""
    body = client.cancel(job_id)
    click.echo(f"{job_id}  {body.get('status', 'cancelled')}  {body.get('message', '')}".rstrip())


@cli.group()
def keys() -> None:
    """Make API keys for a server's keys file (no server needed)."""


def key_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_key_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@keys.command("new")
@click.argument("name", callback=key_name)
@click.option("--admin", is_flag=True, help="The key sees and acts on every job, not only its own.")
def keys_new(name: str, admin: bool) -> None:
    """Print a new random API key named NAME, and its line for the keys file.

    stdout gets two lines, the key and then the line; the hints go to stderr. The key is shown
    only this once: siphon keeps nothing but its SHA-256.
    """
    made = new_key(name, admin)
    click.echo(f"New API key for {name} (shown once; give it to its holder as SIPHON_API_KEY):", err=True)
    click.echo(made.key)
    click.echo("Add this line to the server's keys file (API_KEYS_FILE); it is read within 10 s:", err=True)
    click.echo(made.line)
