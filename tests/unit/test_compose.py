"""compose.yaml checked against the code, since there is no Docker engine here to run it.

Every build context, Dockerfile and file a Dockerfile copies exists; every command runs a module
that exists; a siphon service sets only variables the code reads, with values the config accepts;
the services reach each other on the ports they listen on; nginx balances over both gateways and
takes uploads up to the limit; the services that check API keys or sign download links get them
from compose secrets, files the operator creates, so the stack never runs open.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared import config
from shared.broker import Topology
from shared.config import Settings, env_var_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SIPHON = sorted(name for name, service in SERVICES.items() if "build" in service)
HTTP_SERVICES = ("gateway", "gateway-2", "upload", "metadata")
MULTIPART_SLACK_BYTES = 64 * 1024
SECRETS_MOUNT = Path("/run/secrets")
CHECK_KEYS = ("gateway", "gateway-2", "upload")
"""Services that read API_KEYS_FILE: the gateway checks every request, upload names the job's owner."""
SIGN_LINKS = ("gateway", "gateway-2", "metadata-notifier")
"""Processes that sign download links: the gateway's answers, the notifier's emails and webhooks."""
A_SECRET_FROM_A_FILE = "a-value-compose-would-read-from-the-file"
NGINX_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


# --- reading the files -----------------------------------------------------------------------
def dockerfile_of(name: str) -> Path:
    build = SERVICES[name]["build"]
    context = ROOT / build["context"]
    return context / build.get("dockerfile", "Dockerfile")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def command_of(name: str) -> list[str]:
    """What the container runs: compose's ``command``, else the Dockerfile's last exec-form CMD."""
    if "command" in SERVICES[name]:
        return SERVICES[name]["command"]
    cmds = [args for op, args in instructions(dockerfile_of(name)) if op.upper() == "CMD"]
    assert cmds, f"{dockerfile_of(name)} has no CMD"
    return json.loads(cmds[-1])


def environment_of(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def secrets_of(name: str) -> dict[str, str]:
    """The secrets a service mounts: ``{file name under /run/secrets: secret name}``."""
    mounted = {}
    for entry in SERVICES[name].get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        mounted[target] = source
    return mounted


def settings_of(name: str) -> dict[str, str]:
    """The settings a service's container would load: its environment, plus each mounted secret
    named like a setting (shared/config.py reads /run/secrets), here with a stand-in value."""
    values = {key.lower(): value for key, value in environment_of(name).items() if key.lower() in Settings.model_fields}
    values |= {target: A_SECRET_FROM_A_FILE for target in secrets_of(name) if target in Settings.model_fields}
    return values


def runs_gunicorn(name: str) -> bool:
    return command_of(name)[0] == "gunicorn"


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{command} lacks {flag}"
    return command[command.index(flag) + 1]


def listen_port(name: str) -> int:
    return int(option(command_of(name), "--bind").rsplit(":", 1)[1])


def gunicorn_env_vars() -> set[str]:
    """Variables the services' gunicorn.conf.py files (and their shared base) read."""
    found = set()
    for conf in [*ROOT.glob("services/*/gunicorn.conf.py"), ROOT / "shared" / "gunicorn_base.py"]:
        found |= set(re.findall(r"os\.environ\.get\(\s*[\"']([A-Z0-9_]+)[\"']", conf.read_text()))
    return found


def module_file(module: str) -> Path | None:
    """The file ``python -m module`` or an import of ``module`` would run, if it exists."""
    base = ROOT / module.replace(".", "/")
    return next((p for p in (base.with_suffix(".py"), base / "__main__.py") if p.is_file()), None)


def nginx_config() -> tuple[Path, str]:
    mounts = [volume.split(":")[0] for volume in SERVICES["nginx"].get("volumes", [])]
    confs = [ROOT / source for source in mounts if source.endswith(".conf")]
    assert confs, "nginx mounts no .conf file"
    return confs[0], confs[0].read_text() if confs[0].is_file() else ""


def nginx_size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * NGINX_SIZE_UNITS[unit.lower()]


def seconds(duration: str) -> float:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", duration))


# --- the tests -------------------------------------------------------------------------------
def test_compose_builds_the_four_services_two_gateways_and_the_metadata_consumer():
    assert SIPHON == [
        "conversion",
        "gateway",
        "gateway-2",
        "metadata",
        "metadata-consumer",
        "metadata-notifier",
        "upload",
        "upload-queue-intake",
    ]
    assert SERVICES["gateway-2"] == SERVICES["gateway"], "the second gateway is the first one again"


RABBITMQ_NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


def test_compose_has_the_infrastructure():
    assert all(SERVICES[n]["image"].startswith("rabbitmq:3-management") for n in RABBITMQ_NODES)
    assert {"redis", "redis-replica", "minio", "createbucket", "nginx"} <= set(SERVICES)
    assert SERVICES["createbucket"]["image"].startswith("minio/mc")


@pytest.mark.parametrize("name", SIPHON)
def test_build_context_and_dockerfile_exist(name):
    assert (ROOT / SERVICES[name]["build"]["context"]).is_dir()
    assert dockerfile_of(name).is_file(), f"{name}: no {dockerfile_of(name)}"


@pytest.mark.parametrize("name", SIPHON)
def test_dockerfile_copies_only_what_exists(name):
    context = ROOT / SERVICES[name]["build"]["context"]
    for op, args in instructions(dockerfile_of(name)):
        if op.upper() == "COPY":
            *sources, _target = args.split()
            for source in sources:
                assert (context / source).exists(), f"{dockerfile_of(name)}: COPY {source} does not exist"


@pytest.mark.parametrize("name", SIPHON)
def test_image_runs_as_a_non_root_user(name):
    users = [args for op, args in instructions(dockerfile_of(name)) if op.upper() == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{dockerfile_of(name)} runs as root"


def test_conversion_image_installs_ffmpeg():
    runs = " ".join(args for op, args in instructions(dockerfile_of("conversion")) if op.upper() == "RUN")
    assert re.search(r"apt-get install .*\bffmpeg\b", runs)


def test_conversion_image_installs_the_sandbox():
    runs = " ".join(args for op, args in instructions(dockerfile_of("conversion")) if op.upper() == "RUN")
    assert re.search(r"apt-get install .*\bbubblewrap\b", runs) and re.search(r"\blibseccomp2\b", runs)


def test_conversion_may_create_the_namespaces_its_sandbox_needs():
    options = set(SERVICES["conversion"].get("security_opt", []))
    assert {"seccomp=unconfined", "apparmor=unconfined"} <= options


@pytest.mark.parametrize("name", SIPHON)
def test_command_runs_code_that_exists(name):
    command = command_of(name)
    if runs_gunicorn(name):
        assert (ROOT / option(command, "--config")).is_file()
        module, _, attribute = command[-1].partition(":")
        path = module_file(module)
        assert path is not None, f"{name}: no module {module}"
        assert re.search(rf"^{attribute} = ", path.read_text(), re.MULTILINE), f"{path} defines no {attribute}"
    else:
        assert command[:2] == ["python", "-m"], f"{name}: unexpected command {command}"
        assert module_file(command[2]) is not None, f"{name}: no module {command[2]}"


def test_metadata_consumer_runs_from_the_metadata_image():
    assert SERVICES["metadata-consumer"]["build"] == SERVICES["metadata"]["build"]
    assert SERVICES["metadata-consumer"]["command"] == ["python", "-m", "services.metadata.consumer"]


def test_queue_intake_runs_from_the_upload_image():
    assert SERVICES["upload-queue-intake"]["build"] == SERVICES["upload"]["build"]
    assert SERVICES["upload-queue-intake"]["command"] == ["python", "-m", "services.upload.queue_intake"]


def test_the_queue_intake_follows_the_change_feed_in_the_redis_metadata_writes_it_to():
    intake, metadata = environment_of("upload-queue-intake"), environment_of("metadata")
    assert intake["REDIS_URL"] == metadata["REDIS_URL"]
    assert intake["REDIS_SENTINELS"] == metadata["REDIS_SENTINELS"]
    assert intake.get("REDIS_PREFIX") == metadata.get("REDIS_PREFIX"), "the feed's key is <REDIS_PREFIX>changes"
    assert SERVICES["upload-queue-intake"]["depends_on"]["redis-sentinel-1"]["condition"] == "service_healthy"


@pytest.mark.parametrize("reader", ["conversion", "gateway", "gateway-2"])
def test_readers_of_job_records_read_the_redis_metadata_writes_them_to(reader):
    """``shared/job_records.py``: a reader that looked elsewhere would miss every record, and ask
    the metadata service each time."""
    theirs, metadata = environment_of(reader), environment_of("metadata")
    assert theirs["REDIS_URL"] == metadata["REDIS_URL"]
    assert theirs["REDIS_SENTINELS"] == metadata["REDIS_SENTINELS"]
    assert theirs.get("REDIS_PREFIX") == metadata.get("REDIS_PREFIX"), "a record's key is <REDIS_PREFIX>job:<id>"


def test_minio_notifies_the_exchange_the_queue_intake_consumes_as_siphon_declares_it():
    minio = environment_of("minio")
    intake = load_settings(
        **{k.lower(): v for k, v in environment_of("upload-queue-intake").items() if k.lower() in Settings.model_fields}
    )
    assert minio["MINIO_NOTIFY_AMQP_ENABLE_SIPHON"] == "on"
    assert minio["MINIO_NOTIFY_AMQP_EXCHANGE_SIPHON"] == Topology.from_settings(intake).s3_events_exchange
    # MinIO redeclares the exchange before each publish: what Topology.declare_intake declares, or 406
    assert minio["MINIO_NOTIFY_AMQP_EXCHANGE_TYPE_SIPHON"] == "fanout"
    assert minio["MINIO_NOTIFY_AMQP_DURABLE_SIPHON"] == "on"
    assert minio.get("MINIO_NOTIFY_AMQP_AUTO_DELETED_SIPHON", "off") == "off"
    assert minio.get("MINIO_NOTIFY_AMQP_INTERNAL_SIPHON", "off") == "off"
    amqp = urlsplit(intake.amqp_urls[0])
    assert urlsplit(minio["MINIO_NOTIFY_AMQP_URL_SIPHON"]).netloc == amqp.netloc
    script = " ".join(SERVICES["createbucket"]["entrypoint"])
    notification = f"--prefix {intake.s3_incoming_prefix} local/{intake.s3_bucket} arn:minio:sqs::SIPHON:amqp"
    assert f"mc event add --ignore-existing --event put {notification}" in script


def test_presigned_urls_name_the_minio_port_the_host_reaches():
    public = urlsplit(environment_of("upload")["S3_PUBLIC_ENDPOINT_URL"])
    assert f"127.0.0.1:{public.port}:9000" in SERVICES["minio"]["ports"]


def test_metadata_notifier_runs_from_the_metadata_image():
    assert SERVICES["metadata-notifier"]["build"] == SERVICES["metadata"]["build"]
    assert SERVICES["metadata-notifier"]["command"] == ["python", "-m", "services.metadata.notifier"]


@pytest.mark.parametrize("name", SIPHON)
def test_environment_sets_only_variables_the_code_reads(name):
    readable = env_var_names() | (gunicorn_env_vars() if runs_gunicorn(name) else set())
    unknown = set(environment_of(name)) - readable
    assert not unknown, f"{name} sets {sorted(unknown)}, which neither shared.config nor gunicorn.conf.py reads"


@pytest.mark.parametrize("name", SIPHON)
def test_environment_values_pass_the_config_validation(name):
    s = load_settings(**settings_of(name))
    assert s.storage_backend == "s3", f"{name} does not use MinIO"


def test_every_siphon_service_uses_the_bucket_createbucket_makes():
    buckets = {environment_of(name).get("S3_BUCKET", Settings.model_fields["s3_bucket"].default) for name in SIPHON}
    assert len(buckets) == 1
    assert f"local/{buckets.pop()}" in " ".join(SERVICES["createbucket"]["entrypoint"])


def test_every_service_declares_the_conversion_queue_alike():
    # MAX_ATTEMPTS sets the queue's x-delivery-limit; RabbitMQ refuses a redeclaration that differs.
    values = {environment_of(name).get("MAX_ATTEMPTS") for name in SIPHON if "AMQP_URL" in environment_of(name)}
    assert len(values) == 1, f"MAX_ATTEMPTS differs between services: {values}"


def test_services_are_reached_on_the_ports_they_listen_on():
    for name in SIPHON:
        env = environment_of(name)
        for variable, target in (("UPLOAD_URL", "upload"), ("METADATA_URL", "metadata")):
            if variable in env:
                assert env[variable] == f"http://{target}:{listen_port(target)}", f"{name}: {variable}"
    _, conf = nginx_config()
    assert f"server gateway:{listen_port('gateway')}" in conf


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_http_service_has_a_healthcheck_on_healthz_and_readyz(name):
    test = " ".join(SERVICES[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{listen_port(name)}/healthz" in test
    assert f"127.0.0.1:{listen_port(name)}/readyz" in test


def test_nginx_balances_over_every_gateway_and_waits_for_them():
    _, conf = nginx_config()
    upstream = re.search(r"upstream \w+ \{(.*?)\}", conf, re.DOTALL).group(1)
    servers = re.findall(r"^\s*server ([\w-]+):(\d+)", upstream, re.MULTILINE)
    gateways = [name for name in SIPHON if dockerfile_of(name) == dockerfile_of("gateway")]
    assert sorted(servers) == sorted((name, str(listen_port(name))) for name in gateways) and len(servers) == 2
    assert set(gateways) <= set(SERVICES["nginx"]["depends_on"])


@pytest.mark.parametrize("name", ["conversion", "metadata-consumer"])
def test_processes_without_an_http_api_serve_metrics_on_a_port(name):
    assert int(environment_of(name)["METRICS_PORT"]) > 0


def test_rabbitmq_is_three_nodes_of_one_cluster_sharing_a_cookie():
    conf = (ROOT / "deploy/rabbitmq/cluster.conf").read_text()
    for node in RABBITMQ_NODES:
        service = SERVICES[node]
        assert service["hostname"] == node and f"= rabbit@{node}\n" in conf
        assert "./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in service["volumes"]
    assert len({SERVICES[n]["environment"]["RABBITMQ_ERLANG_COOKIE"] for n in RABBITMQ_NODES}) == 1
    assert len({v for n in RABBITMQ_NODES for v in SERVICES[n]["volumes"] if "-data:" in v}) == 3, "a disk each"


@pytest.mark.parametrize("name", SIPHON)
def test_siphon_services_list_every_rabbitmq_node_and_wait_for_all(name):
    environment = environment_of(name)
    if "AMQP_URL" not in environment:
        return
    urls = load_settings(amqp_url=environment["AMQP_URL"]).amqp_urls
    assert sorted(urlsplit(u).hostname for u in urls) == RABBITMQ_NODES
    # quorum queues are replicated on the nodes in the cluster when first declared: all three
    assert set(RABBITMQ_NODES) <= set(SERVICES[name]["depends_on"]), name


def test_depends_on_names_existing_services():
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_nginx_config_is_mounted_and_takes_uploads_up_to_the_limit():
    path, conf = nginx_config()
    assert path.is_file(), f"{path} does not exist"
    # Slow uploads wait in nginx, not in gateway threads (docs/reliability.md, item 15).
    assert re.search(r"^\s*proxy_request_buffering on;", conf, re.MULTILINE)
    assert re.search(r"^\s*proxy_http_version 1\.1;", conf, re.MULTILINE)
    assert re.search(r"^\s*upstream \w+ \{", conf, re.MULTILINE)
    assert re.search(r"^\s*proxy_(read|send)_timeout \d+s;", conf, re.MULTILINE)
    body_limit = nginx_size(re.search(r"client_max_body_size (\w+);", conf).group(1))
    for name in ("gateway", "upload"):
        max_upload = int(
            environment_of(name).get("MAX_UPLOAD_BYTES", Settings.model_fields["max_upload_bytes"].default)
        )
        assert body_limit >= max_upload + MULTIPART_SLACK_BYTES, f"nginx cuts uploads below {name}'s MAX_UPLOAD_BYTES"


def test_conversion_runs_several_replicas():
    assert SERVICES["conversion"]["deploy"]["replicas"] > 1


def test_conversion_gets_time_to_finish_its_task_on_stop():
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    grace = float(environment_of("conversion").get("SHUTDOWN_GRACE_SECONDS", grace))
    assert seconds(SERVICES["conversion"].get("stop_grace_period", "10s")) > grace


def test_the_gateways_trust_x_forwarded_for_from_nginx_only():
    nginx = SERVICES["nginx"]["networks"]["default"]["ipv4_address"]
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx) in ipaddress.ip_network(subnet)
    for gateway in ("gateway", "gateway-2"):
        assert environment_of(gateway)["TRUSTED_PROXIES"] == nginx


def test_the_services_that_count_rate_limits_share_one_redis_and_the_same_limits():
    counting = [environment_of(name) for name in ("gateway", "upload")]
    assert {env["REDIS_URL"] for env in counting} == {environment_of("metadata")["REDIS_URL"]}
    for name in ("QUOTA_SUBMISSIONS_PER_MINUTE", "QUOTA_UPLOAD_BYTES_PER_DAY", "QUOTA_EMAILS_PER_HOUR"):
        assert len({env[name] for env in counting}) == 1, name


# --- Redis with Sentinel (issue 18) ---------------------------------------------------------------
SENTINEL_PORT = 26379


def sentinel_config(name: str) -> dict[str, list[str]]:
    """A Sentinel's configuration lines (its ``command``, which its entrypoint writes to a file),
    by directive: ``{"sentinel monitor": ["siphon redis 6379 2"], "port": ["26379"], ...}``."""
    lines: dict[str, list[str]] = {}
    for line in SERVICES[name]["command"]:
        words = line.split()
        key, rest = (" ".join(words[:2]), words[2:]) if words[0] == "sentinel" else (words[0], words[1:])
        lines.setdefault(key, []).append(" ".join(rest))
    return lines


def sentinels_named(env: dict[str, str]) -> list[tuple[str, int]]:
    return config.sentinel_addresses(env["REDIS_SENTINELS"])


def test_redis_runs_as_a_primary_a_replica_and_three_sentinels():
    sentinels = sorted(name for name in SERVICES if name.startswith("redis-sentinel-"))
    assert len(sentinels) == 3
    replica = SERVICES["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"], "the replica follows the primary"
    for name in sentinels:
        entrypoint = " ".join(SERVICES[name]["entrypoint"])
        assert "--sentinel" in entrypoint and "/tmp/sentinel.conf" in entrypoint
        monitor = sentinel_config(name)["sentinel monitor"]
        assert len(monitor) == 1
        master, host, port, quorum = monitor[0].split()
        assert (host, int(port)) == ("redis", 6379) and int(quorum) == 2, "a majority of three"
        assert sentinel_config(name)["port"] == [str(SENTINEL_PORT)]
        assert "sentinel resolve-hostnames" in sentinel_config(name), "the nodes are named by compose's DNS"


@pytest.mark.parametrize("name", SIPHON)
def test_every_service_on_redis_asks_all_three_sentinels_for_the_primary_they_monitor(name):
    env = environment_of(name)
    if "REDIS_URL" not in env:
        return
    s = load_settings(**settings_of(name))
    sentinels = sorted(n for n in SERVICES if n.startswith("redis-sentinel-"))
    assert sorted(sentinels_named(env)) == [(n, SENTINEL_PORT) for n in sentinels]
    for sentinel in sentinels:
        assert sentinel_config(sentinel)["sentinel monitor"][0].split()[0] == s.redis_sentinel_master
    assert urlsplit(s.redis_url).path == "/0"
    assert "redis" not in SERVICES[name].get("depends_on", {}), "the primary may be another node by now"
    assert any(d.startswith("redis-sentinel-") for d in started_after(name)), "it starts once a Sentinel answers"


def started_after(name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through another."""
    found, todo = set(), [name]
    while todo:
        for dependency in SERVICES[todo.pop()].get("depends_on", {}):
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


# --- API keys and signed links: from secrets, never open --------------------------------------------
def test_secrets_are_files_the_operator_creates_and_git_ignores():
    assert config.SECRETS_DIR == SECRETS_MOUNT, "compose mounts secrets where shared/config.py reads them"
    for name, secret in COMPOSE["secrets"].items():
        path = Path(secret["file"])
        assert path.parent == Path("deploy/secrets"), f"secret {name}: {path} is not under deploy/secrets/"
    ignore = (ROOT / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert ignore == ["*", "!.gitignore", "!README.md"], "the operator's secret files must never be committed"
    assert (ROOT / "deploy" / "secrets" / "README.md").is_file()


@pytest.mark.parametrize("name", SIPHON)
def test_every_mounted_secret_is_declared_and_read(name):
    env = environment_of(name)
    for target, source in secrets_of(name).items():
        assert source in COMPOSE["secrets"], f"{name} mounts undeclared secret {source}"
        read_by = target in Settings.model_fields or str(SECRETS_MOUNT / target) in env.values()
        assert read_by, f"{name} mounts {target}, which no setting reads"


@pytest.mark.parametrize("name", CHECK_KEYS)
def test_services_that_check_keys_read_the_keys_file_from_a_secret(name):
    keys_file = Path(environment_of(name)["API_KEYS_FILE"])
    assert keys_file.parent == SECRETS_MOUNT and keys_file.name in secrets_of(name)
    s = load_settings(**settings_of(name))
    assert s.api_keys_file == keys_file and s.download_link_secret is not None


@pytest.mark.parametrize("name", sorted(set(SIGN_LINKS) | set(CHECK_KEYS)))
def test_link_signers_get_the_download_link_secret_from_a_secret(name):
    assert "download_link_secret" in secrets_of(name) and "download_link_secret" in Settings.model_fields
    s = load_settings(**settings_of(name))
    assert s.download_link_secret.get_secret_value() == A_SECRET_FROM_A_FILE


def test_no_secret_value_is_written_in_compose():
    for name in SIPHON:
        assert "DOWNLOAD_LINK_SECRET" not in environment_of(name), f"{name}: the secret belongs in a secret file"
    public = [name for name in SIPHON if dockerfile_of(name) == dockerfile_of("gateway")]
    assert public and set(public) <= set(CHECK_KEYS), "every gateway checks keys: compose never runs open"
