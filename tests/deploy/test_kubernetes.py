"""deploy/kubernetes: every core object against the Kubernetes schemas (offline, strict), the KEDA
ScaledObject against a schema of its own, and the objects against each other and the code."""

from __future__ import annotations

import copy
import math
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.settings import Settings
from shared.stream import Layout
from tests.deploy.tools import KUBE, by_kind, documents, manifests, need, run

K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to apply on
CRDS = {"ScaledObject"}  # kubernetes-validate knows core objects only
KUSTOMIZATION = documents(KUBE / "kustomization.yaml")[0]


def settings_env() -> dict[str, str]:
    """What every container gets from the ConfigMap and the Secret."""
    (cm,) = by_kind("ConfigMap")
    (secret,) = by_kind("Secret")
    return {**cm["data"], **secret["stringData"]}


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in by_kind("Deployment") + by_kind("Job")
    ]


@pytest.mark.parametrize(
    "path,obj",
    [(p, d) for p, d in manifests() if d["kind"] not in CRDS],
    ids=lambda v: v.name if hasattr(v, "name") else f"{v['kind']}/{v['metadata']['name']}",
)
def test_core_objects_validate_against_the_kubernetes_schemas(path, obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_deployment():
    """The check above can fail: a misspelt field and a wrong type are refused."""
    (gateway, *_) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "faultline-gateway"]
    broken = copy.deepcopy(gateway)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(gateway)
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "thirty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_file_and_builds():
    listed = set(KUSTOMIZATION["resources"])
    assert listed == {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    kubectl = need("kubectl", "kubectl from the Kubernetes project; not packaged by Debian", ci=False)
    built = run(kubectl, "kustomize", str(KUBE))
    assert built.returncode == 0, built.stderr
    objs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert len(objs) == len(manifests())
    for obj in objs:
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == KUSTOMIZATION["namespace"]
        if obj["kind"] not in CRDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    images = {c["image"] for o in objs if o["kind"] in ("Deployment", "Job") for c in _containers(o)}
    assert images == {f"faultline:{KUSTOMIZATION['images'][0]['newTag']}"}


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"enum": ["redis-streams", "redis-cluster-streams"]},
                            # KEDA reads trigger metadata as map[string]string: an unquoted number
                            # is refused by the API server.
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
REDIS_STREAMS_KEYS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "usernameFromEnv",
    "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
    "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip


async def test_scaled_object_scales_the_worker_on_the_consumer_groups_lag(consumer, redis, settings):
    (so,) = by_kind("ScaledObject")
    jsonschema.validate(so, SCALED_OBJECT)
    spec = so["spec"]
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]  # one always runs maintenance
    triggers = spec["triggers"]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "redis-streams" and set(meta) <= REDIS_STREAMS_KEYS
        assert int(meta["lagCount"]) > 0 and "pendingEntriesCount" not in meta  # lag, not pending
    # Every worker reads every shard: the shards' lags are summed into one target.
    modifiers = spec["advanced"]["scalingModifiers"]
    assert sorted(modifiers["formula"].split(" + ")) == sorted(t["name"] for t in triggers)
    assert int(modifiers["target"]) > 0 and modifiers["metricType"] == "AverageValue"

    # The streams and the group the code really reads: every shard of the ConfigMap's prefix and
    # shard count, and the group the test worker joined on each.
    env = settings_env()
    s = Settings.from_env(env)
    assert [t["metadata"]["stream"] for t in triggers] == [
        shard.stream for shard in Layout(s.stream_prefix, s.stream_shards).shards
    ]
    for shard in Layout(settings.stream_prefix, settings.stream_shards).shards:
        groups = await redis.xinfo_groups(shard.stream)
        names = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in groups}
        assert {t["metadata"]["consumerGroup"] for t in triggers} <= names, names
    meta = triggers[0]["metadata"]

    # The target is the worker Deployment, and the address it names is in that container's env.
    (target,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == spec["scaleTargetRef"]["name"]]
    assert "replicas" not in target["spec"]  # KEDA owns the count; `apply` must not reset it
    (container,) = target["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker"]
    (secret,) = by_kind("Secret")
    refs = {r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r}
    assert secret["metadata"]["name"] in refs and meta["addressFromEnv"] in secret["stringData"]
    redis_url = urlsplit(secret["stringData"]["FAULTLINE_REDIS_URL"])
    assert secret["stringData"][meta["addressFromEnv"]] == f"{redis_url.hostname}:{redis_url.port}"
    assert meta.get("databaseIndex", "0") == (redis_url.path.strip("/") or "0")


def test_settings_in_the_configmap_and_secret_start_a_service():
    """Settings.from_env refuses a malformed value: the manifests' values would not stop start-up."""
    s = Settings.from_env(settings_env())
    assert s.host == "0.0.0.0" and s.database_url and s.redis_url


def test_deployments_probe_terminate_gracefully_and_are_bounded():
    grace = Settings.from_env(settings_env()).shutdown_grace
    probes = {
        "gateway": ("/healthz", "/readyz"),
        "query": ("/healthz", "/readyz"),
        "worker": (
            ["python", "-m", "services.worker.health"],
            ["python", "-m", "services.worker.health", "--ready"],
        ),
    }
    deployments = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][0]: d for d in by_kind("Deployment")
    }
    assert set(deployments) == set(probes)
    for service, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        live, ready = probes[service]
        if isinstance(live, str):
            assert c["livenessProbe"]["httpGet"]["path"] == live
            assert c["readinessProbe"]["httpGet"]["path"] == ready
        else:
            assert c["livenessProbe"]["exec"]["command"] == live
            assert c["readinessProbe"]["exec"]["command"] == ready
            assert {"name": "FAULTLINE_HEALTH_FILE", "value": "/tmp/faultline-worker.json"} in c["env"]
        pause = 0
        if "lifecycle" in c:
            cmd = c["lifecycle"]["preStop"]["exec"]["command"]
            assert cmd[0] == "sleep"
            pause = int(cmd[1])
        assert spec["terminationGracePeriodSeconds"] > pause + grace, service
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["image"] == KUSTOMIZATION["images"][0]["name"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, c["name"], kind)
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_services_pdbs_and_hpa_select_real_pods():
    pods = {d["metadata"]["name"]: d for d in by_kind("Deployment")}

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            n
            for n, d in pods.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for svc in by_kind("Service"):
        (name,) = selected(svc["spec"]["selector"])
        (c,) = pods[name]["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"] for p in c["ports"]}
        assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
    covered = {
        n for pdb in by_kind("PodDisruptionBudget") for n in selected(pdb["spec"]["selector"]["matchLabels"])
    }
    assert covered == set(pods)
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    target = pods[hpa["spec"]["scaleTargetRef"]["name"]]
    assert target["spec"]["template"]["spec"]["containers"][0]["args"] == ["gateway"]
    assert "replicas" not in target["spec"]
    assert hpa["spec"]["minReplicas"] >= 2 and [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == [
        "cpu"
    ]
    cpu_limit = target["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
    request = target["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    # The target must be reachable under the CPU limit, or the HPA would never see it.
    utilisation = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] / 100
    assert utilisation * _cores(request) < _cores(cpu_limit)
    assert not math.isclose(utilisation * _cores(request), _cores(cpu_limit))


def _cores(q: str) -> float:
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def test_the_migration_job_and_init_containers_run_migrate():
    (job,) = by_kind("Job")
    assert [c["args"] for c in job["spec"]["template"]["spec"]["containers"]] == [["migrate"]]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    for d in by_kind("Deployment"):
        assert [c["args"] for c in d["spec"]["template"]["spec"]["initContainers"]] == [["migrate"]]
