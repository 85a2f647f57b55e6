"""The Kubernetes manifests (deploy/kubernetes): rendered as kustomize renders them, valid against the
Kubernetes API schemas offline (kubernetes-validate bundles them), and holding what the service
needs: hardened pods, the right probes, a grace period longer than the shutdown, the service's real
setting names, secrets as files, a metrics port for a ServiceMonitor.

No cluster and no kustomize binary are needed: ``render`` below is the subset of kustomize these
manifests use (resources, namespace, images, strategic-merge patches), and it refuses anything else
in a kustomization.yaml. Where ``kustomize`` or ``kubectl`` is installed, a test checks that it
renders exactly what ``render`` does."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from cds_service.config import env_var_names, secret_file_env_names
from tests.conftest import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
SERVICE_MONITOR = OVERLAY / "servicemonitor.yaml"

# The oldest Kubernetes minor still common in hospital clusters, and the newest with bundled schemas.
SCHEMA_VERSIONS = ("1.29.0", latest_version())

# --- the subset of kustomize these manifests use ------------------------------------------------

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
# Strategic merge: lists merged item by item on these keys (as Kubernetes' patchMergeKey); the
# patch's new items come first, as kustomize puts them. Every other list is replaced.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        assert not key.startswith("$"), f"patch directive {key} is beyond the test's kustomize subset"
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and key in _MERGE_KEYS:
            merge_key = _MERGE_KEYS[key]
            existing = {item[merge_key]: item for item in current}
            added = []
            for item in value:
                if item[merge_key] in existing:
                    _merge(existing[item[merge_key]], item)
                else:
                    added.append(copy.deepcopy(item))
            target[key] = added + current
        else:
            target[key] = copy.deepcopy(value)


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    return doc.get("spec", {}).get("template", {}).get("spec")


def _set_images(docs: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for doc in docs:
        spec = _pod_spec(doc) or {}
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, _ = container["image"].partition("@")
            name = re.sub(r":[^/:]+$", "", name)
            for image in images:
                if image["name"] != name:
                    continue
                reference = image.get("newName", name)
                if "digest" in image:
                    reference += "@" + image["digest"]
                elif "newTag" in image:
                    reference += ":" + str(image["newTag"])
                container["image"] = reference


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kustomize build directory`` prints (in another order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: {sorted(unknown)} is beyond the test's kustomize subset; extend render()"
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs += render(path) if path.is_dir() else _documents(path)
    for patch_entry in kustomization.get("patches", []):
        assert set(patch_entry) == {"path"}, f"only patches from files are in the subset: {patch_entry}"
        for patch in _documents(directory / patch_entry["path"]):
            (target,) = [
                doc
                for doc in docs
                if doc["kind"] == patch["kind"] and doc["metadata"]["name"] == patch["metadata"]["name"]
            ]
            _merge(target, patch)
    _set_images(docs, kustomization.get("images", []))
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for doc in docs:
        assert doc["kind"] not in kinds, f"two {doc['kind']} resources: the tests below expect one of each"
        kinds[doc["kind"]] = doc
    return kinds


@pytest.fixture(scope="module")
def overlay() -> dict[str, dict[str, Any]]:
    return _by_kind(render(OVERLAY))


@pytest.fixture(scope="module")
def container(overlay: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = overlay["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


# --- rendering and schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_renderer_here_agrees_with_kustomize_itself(directory):
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: render() alone renders the manifests")
    out = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120, check=True)
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(directory)}
    assert ours == theirs


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(directory, version):
    docs = render(directory)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_refuses_a_misspelt_field():
    """The check above has teeth: strict validation refuses a field Kubernetes does not know."""
    deployment = _by_kind(render(BASE))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[-1], strict=True)


# --- what the service needs -------------------------------------------------------------------------


def test_the_pods_run_as_the_images_non_root_user_with_a_read_only_root_and_no_privileges(overlay, container):
    pod = overlay["Deployment"]["spec"]["template"]["spec"]
    uid = re.search(r"--uid (\d+)", (REPO / "Dockerfile").read_text()).group(1)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert overlay["ServiceAccount"]["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == overlay["ServiceAccount"]["metadata"]["name"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Where it writes, on a read-only root: /tmp (worker metrics) and the data directory.
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    assert writable == {"/tmp", "/var/lib/calciphylaxis-cds"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_liveness_is_health_readiness_is_ready_and_start_up_has_its_own_probe(container):
    port = container["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


def test_the_grace_period_outlasts_the_pre_stop_pause_and_the_shutdown_timeout(overlay, container):
    pod = overlay["Deployment"]["spec"]["template"]["spec"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    shutdown = float(overlay["ConfigMap"]["data"]["CDS_SHUTDOWN_TIMEOUT_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + shutdown


def test_the_environment_uses_the_services_real_settings_and_keeps_secrets_out_of_it(overlay, container):
    settings, files = set(env_var_names()), set(secret_file_env_names())
    data = overlay["ConfigMap"]["data"]
    unknown = set(data) - settings
    assert not unknown, f"the ConfigMap sets settings that do not exist: {unknown}"
    assert container["envFrom"] == [{"configMapRef": {"name": overlay["ConfigMap"]["metadata"]["name"]}}]
    env = {item["name"]: item for item in container["env"]}
    unknown = set(env) - settings - files
    assert not unknown, f"the Deployment sets variables the service does not read: {unknown}"
    # The database URL may be plain configuration, without its password (CDS_DATABASE_PASSWORD_FILE).
    secrets = {name.removesuffix("_FILE") for name in files} - {"CDS_DATABASE_URL"}
    assert not secrets & set(data), "a secret setting is in the ConfigMap: give it as a file"
    assert not secrets & {name for name, item in env.items() if "value" in item}
    assert urlsplit(data["CDS_DATABASE_URL"]).password is None
    assert {"CDS_DATABASE_PASSWORD_FILE", "CDS_REDIS_URL_FILE", "CDS_METRICS_TOKEN_FILE"} <= set(env)


def test_secret_files_are_read_from_the_mounted_secret_readable_by_the_pods_group_only(overlay, container):
    pod = overlay["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert volume["secret"]["defaultMode"] & 0o007 == 0
    for item in container["env"]:
        if item["name"].endswith("_FILE"):
            path = Path(item["value"])
            assert path.parent == Path(mount["mountPath"]), item
            assert re.fullmatch(r"[a-z0-9-]+", path.name), item  # a Secret key


def test_the_service_names_a_metrics_port_that_the_example_service_monitor_scrapes(overlay, container):
    service = overlay["Service"]
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert ports["metrics"]["targetPort"] == container["ports"][0]["name"]
    assert ports["http"]["targetPort"] == container["ports"][0]["name"]
    (monitor,) = _documents(SERVICE_MONITOR)
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    (secret_volume,) = [v for v in overlay["Deployment"]["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert credentials["name"] == secret_volume["secret"]["secretName"]
    token_file = next(i["value"] for i in container["env"] if i["name"] == "CDS_METRICS_TOKEN_FILE")
    assert credentials["key"] == Path(token_file).name


def test_every_selector_selects_the_pods(overlay):
    pod_labels = overlay["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    for selector in (
        overlay["Deployment"]["spec"]["selector"]["matchLabels"],
        overlay["Service"]["spec"]["selector"],
        overlay["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        overlay["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector and selector.items() <= pod_labels


def test_the_autoscaler_and_the_disruption_budget_keep_one_replica_serving(overlay):
    hpa = overlay["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": overlay["Deployment"]["metadata"]["name"],
    }
    assert "replicas" not in overlay["Deployment"]["spec"], "the autoscaler owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdb = overlay["PodDisruptionBudget"]["spec"]
    assert pdb.get("maxUnavailable") == 1 or 1 <= pdb.get("minAvailable", 0) < hpa["spec"]["minReplicas"]


def test_the_network_policy_admits_only_the_app_port_and_lets_out_dns_databases_and_https(overlay, container):
    spec = overlay["NetworkPolicy"]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    app_port = container["ports"][0]["name"]
    for rule in spec["ingress"]:
        assert rule["from"], "every ingress rule names who may connect"
        assert [port["port"] for port in rule["ports"]] == [app_port]
    egress = {(port["port"], port.get("protocol", "TCP")) for rule in spec["egress"] for port in rule["ports"]}
    assert egress == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (6379, "TCP"), (443, "TCP")}


def test_the_example_overlay_sets_its_namespace_image_and_issuers_file(overlay, container):
    namespace = overlay["Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind, doc in overlay.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], kind
    assert container["image"].startswith("registry.example.org/")
    issuers = Path(overlay["ConfigMap"]["data"]["CDS_ISSUERS_FILE"])
    mounts = {Path(m["mountPath"]) for m in container["volumeMounts"]}
    assert issuers.parent in mounts
