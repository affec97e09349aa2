"""What a Kubernetes canary's revision covers (its pod template and the ConfigMaps and Secrets
it uses, as Flagger tracks them) and the ready thresholds, against kmock over real HTTP."""

from typing import Any

import pytest

from activities.kubernetes_target import (
    KubernetesTarget,
    config_refs,
    ready_count,
    template_revision,
)
from tests.support.kube import (
    DEPLOYMENTS,
    NAMESPACE,
    ServedEmulator,
    kube_fixture,  # noqa: F401
    podinfo_deployment,
)

CONFIG_MAPS = "v1/configmaps"
SECRETS = "v1/secrets"


def with_config(deployment: dict[str, Any]) -> dict[str, Any]:
    """podinfo reading a ConfigMap as a volume and a Secret as environment variables."""
    spec = deployment["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "config", "configMap": {"name": "podinfo-config"}}]
    spec["containers"][0]["envFrom"] = [{"secretRef": {"name": "podinfo-token"}}]
    return deployment


def config_map(data: dict[str, str]) -> dict[str, Any]:
    metadata = {"name": "podinfo-config", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def secret(token: str) -> dict[str, Any]:
    metadata = {"name": "podinfo-token", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": {"TOKEN": token}}


def test_config_refs_finds_every_kind_of_use() -> None:
    template = {
        "spec": {
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-volume"}},
                {"name": "b", "secret": {"secretName": "secret-volume"}},
                {
                    "name": "c",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "cm-projected"}},
                            {"secret": {"name": "secret-projected"}},
                        ]
                    },
                },
                {"name": "d", "emptyDir": {}},
            ],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
            "containers": [
                {
                    "name": "app",
                    "envFrom": [{"secretRef": {"name": "secret-env-from"}}],
                    "env": [
                        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm-key"}}},
                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "secret-key"}}},
                        {"name": "Z", "value": "plain"},
                    ],
                }
            ],
        }
    }
    assert config_refs(template) == [
        ("ConfigMap", "cm-init"),
        ("ConfigMap", "cm-key"),
        ("ConfigMap", "cm-projected"),
        ("ConfigMap", "cm-volume"),
        ("Secret", "secret-env-from"),
        ("Secret", "secret-key"),
        ("Secret", "secret-projected"),
        ("Secret", "secret-volume"),
    ]


def test_a_template_without_configs_keeps_its_template_revision(kube: ServedEmulator) -> None:
    kube.put(DEPLOYMENTS, podinfo_deployment())
    target = KubernetesTarget(kube.api, NAMESPACE, "podinfo")
    template = kube.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["template"]
    assert target.canary_revision() == template_revision(template)


def test_a_changed_config_map_or_secret_is_a_new_revision(kube: ServedEmulator) -> None:
    kube.put(DEPLOYMENTS, with_config(podinfo_deployment()))
    kube.put(CONFIG_MAPS, config_map({"level": "info"}))
    kube.put(SECRETS, secret("c2VjcmV0"))
    target = KubernetesTarget(kube.api, NAMESPACE, "podinfo")
    first = target.canary_revision()
    assert first == target.canary_revision()
    template = kube.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["template"]
    assert first != template_revision(template)
    assert "c2VjcmV0" not in first

    kube.put(CONFIG_MAPS, config_map({"level": "debug"}))
    second = target.canary_revision()
    assert second != first
    kube.put(SECRETS, secret("b3RoZXI="))
    third = target.canary_revision()
    assert third not in (first, second)


def test_promotion_refuses_a_revision_whose_config_changed(kube: ServedEmulator) -> None:
    kube.put(DEPLOYMENTS, with_config(podinfo_deployment()))
    kube.put(CONFIG_MAPS, config_map({"level": "info"}))
    kube.put(SECRETS, secret("c2VjcmV0"))
    target = KubernetesTarget(kube.api, NAMESPACE, "podinfo")
    target.initialize()
    analysed = target.canary_revision()
    kube.put(CONFIG_MAPS, config_map({"level": "debug"}))
    before = kube.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    found = target.promote(analysed)
    assert found != analysed
    assert kube.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary") == before
    assert target.promote(found) == found


@pytest.mark.parametrize(
    ("desired", "percent", "needed"),
    [(4, 100, 4), (4, 50, 2), (3, 50, 2), (1, 10, 1), (10, 1, 1), (0, 100, 0)],
)
def test_ready_count(desired: int, percent: int, needed: int) -> None:
    assert ready_count(desired, percent) == needed


@pytest.mark.parametrize(("threshold", "ready"), [(100, False), (75, True), (80, False)])
def test_the_canary_is_ready_at_its_threshold_of_ready_replicas(
    kube: ServedEmulator, threshold: int, ready: bool
) -> None:
    deployment = podinfo_deployment(replicas=4)
    status = {"replicas": 4, "readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3}
    kube.put(DEPLOYMENTS, {**deployment, "status": status})
    target = KubernetesTarget(kube.api, NAMESPACE, "podinfo", canary_ready_threshold=threshold)
    readiness = target.canary_readiness()
    assert readiness.ready is ready
    if not ready:
        assert "3 of 4 replicas ready" in readiness.message


def test_a_threshold_never_excuses_replicas_on_an_old_template(kube: ServedEmulator) -> None:
    deployment = podinfo_deployment(replicas=4)
    status = {"replicas": 4, "readyReplicas": 4, "updatedReplicas": 2, "availableReplicas": 4}
    kube.put(DEPLOYMENTS, {**deployment, "status": status})
    target = KubernetesTarget(kube.api, NAMESPACE, "podinfo", canary_ready_threshold=50)
    readiness = target.canary_readiness()
    assert not readiness.ready
    assert "2 of 4 replicas updated" in readiness.message


def test_the_primary_has_its_own_threshold(kube: ServedEmulator) -> None:
    deployment = podinfo_deployment(name="podinfo-primary", replicas=2)
    status = {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}
    kube.put(DEPLOYMENTS, {**deployment, "status": status})
    strict = KubernetesTarget(kube.api, NAMESPACE, "podinfo", canary_ready_threshold=50)
    lenient = KubernetesTarget(kube.api, NAMESPACE, "podinfo", primary_ready_threshold=50)
    assert not strict.primary_readiness().ready
    assert lenient.primary_readiness().ready
