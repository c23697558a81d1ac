"""deploy/k8s checked offline: against the Kubernetes JSON schemas (kubernetes-validate ships them),
against KEDA's CRD (the fields it requires), and against the code (ports, probes, settings, queue).
The services that check API keys or sign download links get them from the Secret siphon-auth.

The kustomization is rendered here by hand (its resources, namespace and images), so no kustomize
binary is needed; where ``kubectl`` is installed, its own rendering must name the same objects.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.broker import Topology
from shared.config import env_var_names, load_settings, sentinel_addresses

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
HTTP_SERVICES = ("gateway", "upload", "metadata")
GUNICORN_ENV_VARS = {"WEB_WORKERS", "WEB_THREADS", "WEB_CONNECTIONS"}
SECRET_KEYS = {"AMQP_URL", "REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
AUTH_SECRET = "siphon-auth"
"""The Secret of the keys file (key ``api_keys``) and the link secret (``download_link_secret``), README.md."""
CHECK_KEYS = ("gateway", "upload")
"""Deployments that read API_KEYS_FILE: the gateway checks every request, upload names the job's owner."""
SIGN_LINKS = ("gateway", "metadata-notifier")
"""Deployments that sign download links: the gateway's answers, the notifier's emails and webhooks."""
A_SECRET_VALUE = "a-value-kubernetes-would-read-from-the-secret"

# The parts of KEDA's CRDs (keda.sh/v1alpha1, KEDA 2.x) that the manifests use: required fields and types.
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                "authenticationRef": {"type": "object", "required": ["name"]},
                            },
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}
RABBITMQ_TRIGGER = {  # KEDA's rabbitmq scaler metadata
    "type": "object",
    "required": ["queueName", "mode", "value"],
    "properties": {
        "protocol": {"enum": ["amqp", "http", "auto"]},
        "mode": {"enum": ["QueueLength", "MessageRate"]},
        "value": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
    },
}


# --- rendering ---------------------------------------------------------------------------------
def render() -> list[dict]:
    """What ``kustomize build deploy/k8s`` gives for this kustomization: resources, namespace, images."""
    objects = []
    for resource in KUSTOMIZATION["resources"]:
        objects += [doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc]
    images = {image["name"]: image for image in KUSTOMIZATION.get("images", [])}
    for obj in objects:
        if obj["kind"] != "Namespace" and "namespace" in KUSTOMIZATION:
            obj["metadata"]["namespace"] = KUSTOMIZATION["namespace"]
        for container in containers(obj):
            image = images.get(container["image"])
            if image:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


def containers(obj: dict) -> list[dict]:
    return obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


OBJECTS = render()


def the(kind: str, name: str) -> dict:
    [found] = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def ids(objects) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


BUILT_IN = [o for o in OBJECTS if o["kind"] not in KEDA_SCHEMAS]
DEPLOYMENTS = [o for o in OBJECTS if o["kind"] == "Deployment"]
CONFIG = the("ConfigMap", "siphon-config")["data"]


# --- the files ---------------------------------------------------------------------------------
def test_every_manifest_file_is_a_resource_of_the_kustomization():
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(KUSTOMIZATION["resources"])


def test_the_kustomization_runs_every_service_of_the_stack():
    assert {d["metadata"]["name"] for d in DEPLOYMENTS} == {
        "gateway",
        "upload",
        "upload-queue-intake",
        "metadata",
        "metadata-consumer",
        "metadata-notifier",
        "conversion",
    }
    assert {s["metadata"]["name"] for s in OBJECTS if s["kind"] == "Service"} == set(HTTP_SERVICES)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
def test_kubectl_kustomize_renders_the_same_objects():
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert sorted(ids(doc for doc in yaml.safe_load_all(built) if doc)) == sorted(ids(OBJECTS))


# --- schemas -----------------------------------------------------------------------------------
@pytest.mark.parametrize("obj", BUILT_IN, ids=ids(BUILT_IN))
def test_kubernetes_objects_match_the_kubernetes_schema(obj):
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")


@pytest.mark.parametrize(
    "obj", [o for o in OBJECTS if o["kind"] in KEDA_SCHEMAS], ids=ids(o for o in OBJECTS if o["kind"] in KEDA_SCHEMAS)
)
def test_keda_objects_match_kedas_crd(obj):
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])


# --- against the code --------------------------------------------------------------------------
def test_conversion_scales_on_the_conversion_queue_of_the_configured_prefix():
    scaler = the("ScaledObject", "conversion")
    assert the("Deployment", scaler["spec"]["scaleTargetRef"]["name"])
    [trigger] = scaler["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    jsonschema.validate(trigger["metadata"], RABBITMQ_TRIGGER)
    assert trigger["metadata"]["queueName"] == Topology(prefix=CONFIG["AMQP_PREFIX"]).conversion_queue
    auth = the("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"host"}


def test_config_sets_only_variables_the_code_reads_with_values_it_accepts():
    assert set(CONFIG) <= env_var_names() | GUNICORN_ENV_VARS
    settings = load_settings(**{k.lower(): v for k, v in CONFIG.items() if k not in GUNICORN_ENV_VARS})
    assert settings.storage_backend == "s3"  # pods share no disk: the local backend cannot work here
    assert not (set(CONFIG) & SECRET_KEYS), "credentials belong in the Secret siphon-secrets"


def test_redis_is_reached_through_three_sentinels_or_more():
    settings = load_settings(**{k.lower(): v for k, v in CONFIG.items() if k not in GUNICORN_ENV_VARS})
    sentinels = sentinel_addresses(settings.redis_sentinels)
    assert len(set(sentinels)) >= 3, "a majority of Sentinels must survive one node's loss"
    assert settings.redis_sentinel_master == CONFIG["REDIS_SENTINEL_MASTER"]
    assert "REDIS_SENTINELS" in (K8S / "README.md").read_text()


def test_internal_urls_name_the_services_and_their_ports():
    for variable, service in (("UPLOAD_URL", "upload"), ("METADATA_URL", "metadata")):
        port = the("Service", service)["spec"]["ports"][0]["port"]
        assert CONFIG[variable] == f"http://{service}:{port}"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ids(DEPLOYMENTS))
def test_every_container_gets_the_config_and_the_secrets(deployment):
    for container in containers(deployment):
        refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
        assert refs == {"configMapRef": "siphon-config", "secretRef": "siphon-secrets"}


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_http_services_are_probed_on_healthz_and_readyz_at_the_port_their_image_listens_on(name):
    [container] = containers(the("Deployment", name))
    [port] = container["ports"]
    assert port["containerPort"] == dockerfile_listen_port(name)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_each_service_selects_its_deployments_pods_on_a_named_port(name):
    service, deployment = the("Service", name), the("Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for c in containers(deployment) for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ids(DEPLOYMENTS))
def test_images_are_built_by_a_dockerfile_and_commands_run_modules_that_exist(deployment):
    for container in containers(deployment):
        image = container["image"].split(":")[0]
        service = image.removeprefix("siphon-")
        assert (ROOT / "services" / service / "Dockerfile").exists(), image
        command = container.get("command", [])
        if command[:2] == ["python", "-m"]:
            assert (ROOT / Path(*command[2].split("."))).with_suffix(".py").exists(), command


def test_workers_get_longer_to_stop_than_their_shutdown_grace_and_a_work_dir_volume():
    spec = the("Deployment", "conversion")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > load_settings().shutdown_grace_seconds
    [container] = spec["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert CONFIG["WORK_DIR"] in mounts


def test_conversion_may_create_the_namespaces_its_sandbox_needs():
    [container] = the("Deployment", "conversion")["spec"]["template"]["spec"]["containers"]
    context = container["securityContext"]
    assert context["seccompProfile"]["type"] == "Unconfined" and context["appArmorProfile"]["type"] == "Unconfined"
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]


def dockerfile_listen_port(service: str) -> int:
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    argv = json.loads(cmd)
    return int(argv[argv.index("--bind") + 1].rsplit(":", 1)[1])


@pytest.mark.parametrize("name", ["conversion", "metadata-consumer"])
def test_processes_without_an_http_api_expose_metrics_port_for_prometheus(name):
    deployment = the("Deployment", name)
    [container] = containers(deployment)
    [port] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == int(CONFIG["METRICS_PORT"])
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == CONFIG["METRICS_PORT"]


# --- API keys and signed links: from the Secret siphon-auth, never open --------------------------------
def env_of(container: dict) -> dict[str, dict]:
    """A container's ``env``, by name: each entry as written (``value`` or ``valueFrom``)."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def settings_of(container: dict):
    """The settings the container would load: the ConfigMap, then its own env (a value from a Secret
    stands in as A_SECRET_VALUE)."""
    values = {k.lower(): v for k, v in CONFIG.items() if k not in GUNICORN_ENV_VARS}
    for name, entry in env_of(container).items():
        values[name.lower()] = entry.get("value", A_SECRET_VALUE)
    return load_settings(**values)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=ids(DEPLOYMENTS))
def test_every_container_starts_with_its_settings(deployment):
    for container in containers(deployment):
        settings_of(container)  # e.g. API_KEYS_FILE without DOWNLOAD_LINK_SECRET stops a service


def test_the_configmap_holds_neither_the_keys_file_nor_the_link_secret():
    assert not {"API_KEYS_FILE", "DOWNLOAD_LINK_SECRET"} & set(CONFIG), "only where the keys are mounted"


@pytest.mark.parametrize("name", CHECK_KEYS)
def test_services_that_check_keys_read_the_keys_file_from_the_secret(name):
    pod = the("Deployment", name)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    keys_file = Path(env_of(container)["API_KEYS_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == keys_file.parent]
    assert mount.get("readOnly") and "subPath" not in mount, "a subPath mount never sees the Secret change"
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == AUTH_SECRET
    assert {"key": "api_keys", "path": keys_file.name} in volume["secret"]["items"]
    # Readable by the container's user: the file's group is the pod's fsGroup, or the mode lets anyone read.
    mode = volume["secret"].get("defaultMode", 0o644)
    assert mode & 0o004 or (
        mode & 0o040 and pod["securityContext"].get("fsGroup") == pod["securityContext"]["runAsUser"]
    )
    assert settings_of(container).api_keys_file == keys_file


@pytest.mark.parametrize("name", sorted(set(CHECK_KEYS) | set(SIGN_LINKS)))
def test_link_signers_get_the_download_link_secret_from_the_secret(name):
    [container] = containers(the("Deployment", name))
    reference = env_of(container)["DOWNLOAD_LINK_SECRET"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": AUTH_SECRET, "key": "download_link_secret"}
    assert settings_of(container).download_link_secret.get_secret_value() == A_SECRET_VALUE


def test_the_readme_says_how_to_create_the_auth_secret():
    readme = (K8S / "README.md").read_text()
    assert f"create secret generic {AUTH_SECRET}" in readme
    assert "--from-file=api_keys=" in readme and "--from-literal=download_link_secret=" in readme
    assert "siphon keys new" in readme


# --- the RabbitMQ cluster (deploy/k8s/rabbitmq/, the RabbitMQ Cluster Operator's kind) ----------
RABBITMQ_CLUSTER = yaml.safe_load((K8S / "rabbitmq" / "rabbitmq-cluster.yaml").read_text())


def test_rabbitmq_is_a_three_node_cluster_of_the_operator():
    assert (RABBITMQ_CLUSTER["apiVersion"], RABBITMQ_CLUSTER["kind"]) == ("rabbitmq.com/v1beta1", "RabbitmqCluster")
    assert RABBITMQ_CLUSTER["spec"]["replicas"] == 3
    assert "cluster_partition_handling = pause_minority" in RABBITMQ_CLUSTER["spec"]["rabbitmq"]["additionalConfig"]


def test_the_readme_amqp_url_lists_every_node_of_that_cluster():
    name, namespace = RABBITMQ_CLUSTER["metadata"]["name"], RABBITMQ_CLUSTER["metadata"]["namespace"]
    [url] = re.findall(r"AMQP_URL='([^']+)'", (K8S / "README.md").read_text())
    settings = load_settings(amqp_url=url)
    hosts = sorted(u.split("@", 1)[1].split(":", 1)[0] for u in settings.amqp_urls)
    # the operator's pods <name>-server-<i> behind its headless Service <name>-nodes
    assert hosts == [f"{name}-server-{i}.{name}-nodes.{namespace}" for i in range(RABBITMQ_CLUSTER["spec"]["replicas"])]
