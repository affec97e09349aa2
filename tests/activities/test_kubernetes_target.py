"""KubernetesTarget against a kmock Kubernetes emulator over real HTTP."""

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from activities import kube_client
from activities.errors import PermanentError
from activities.kubernetes_target import (
    REVISION_ANNOTATION,
    KubernetesTarget,
    ServiceMetadata,
    ServiceSettings,
    template_revision,
)
from tests.support.kube import (
    AUTOSCALERS,
    DEPLOYMENTS,
    NAMESPACE,
    SERVICES,
    ServedEmulator,
    kube_fixture,  # noqa: F401
    podinfo_autoscaler,
    podinfo_deployment,
)

IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.0"
NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"
SERVICE = ServiceSettings(name="podinfo", port=9898, target_port="http")


def make_target(kube: ServedEmulator, **kwargs: Any) -> KubernetesTarget:
    return KubernetesTarget(kube.api, NAMESPACE, "podinfo", **kwargs)


@pytest.fixture
def seeded(kube: ServedEmulator) -> ServedEmulator:
    kube.put(DEPLOYMENTS, podinfo_deployment())
    kube.put(AUTOSCALERS, podinfo_autoscaler())
    return kube


def test_initialize_creates_relabelled_primary(seeded: ServedEmulator) -> None:
    state = make_target(seeded).initialize()

    target = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")
    primary = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    revision = template_revision(target["spec"]["template"])
    assert state.created_primary
    assert state.primary_replicas == 2
    assert state.canary_revision == revision
    assert state.primary_revision == revision
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert primary["metadata"]["annotations"] == {REVISION_ANNOTATION: revision}
    assert primary["spec"]["replicas"] == 2
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    template = primary["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert (
        template["metadata"]["annotations"] == target["spec"]["template"]["metadata"]["annotations"]
    )
    assert template["spec"] == target["spec"]["template"]["spec"]
    assert primary["spec"]["strategy"] == target["spec"]["strategy"]
    assert target["spec"]["selector"] == {"matchLabels": {"app": "podinfo"}}


def test_revision_is_a_short_stable_digest_of_the_template(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    revision = target.canary_revision()

    assert len(revision) == 16
    assert int(revision, 16) >= 0
    assert target.canary_revision() == revision
    target.set_image(NEW_IMAGE)
    assert target.canary_revision() != revision


@pytest.mark.parametrize("label", ["app", "name", "app.kubernetes.io/name"])
def test_initialize_relabels_whichever_app_label_the_selector_uses(
    kube: ServedEmulator, label: str
) -> None:
    deployment = podinfo_deployment()
    deployment["spec"]["selector"]["matchLabels"] = {label: "podinfo", "tier": "web"}
    deployment["spec"]["template"]["metadata"]["labels"] = {label: "podinfo", "tier": "web"}
    kube.put(DEPLOYMENTS, deployment)

    make_target(kube).initialize()

    primary = kube.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    relabelled = {label: "podinfo-primary", "tier": "web"}
    assert primary["spec"]["selector"]["matchLabels"] == relabelled
    assert primary["spec"]["template"]["metadata"]["labels"] == relabelled


def test_initialize_without_an_app_label_is_permanent(kube: ServedEmulator) -> None:
    deployment = podinfo_deployment()
    deployment["spec"]["selector"]["matchLabels"] = {"tier": "web"}
    kube.put(DEPLOYMENTS, deployment)

    with pytest.raises(PermanentError, match=r"test/podinfo spec.selector.matchLabels"):
        make_target(kube).initialize()
    assert not kube.exists(DEPLOYMENTS, NAMESPACE, "podinfo-primary")


def test_initialize_gives_a_scaled_down_target_a_primary_with_one_replica(
    kube: ServedEmulator,
) -> None:
    kube.put(DEPLOYMENTS, podinfo_deployment(replicas=0))

    state = make_target(kube).initialize()

    assert state.primary_replicas == 1
    assert kube.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")["spec"]["replicas"] == 1


def test_initialize_leaves_an_existing_primary_alone(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    first = target.initialize()
    primary_before = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    target.set_image(NEW_IMAGE)
    target.scale_canary(0)
    writes = seeded.writes()

    second = target.initialize()

    assert seeded.writes() == writes
    assert seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary") == primary_before
    assert not second.created_primary
    assert second.primary_replicas == 2
    assert second.primary_revision == first.canary_revision
    assert second.canary_revision != first.canary_revision


def test_initialize_reports_an_unannotated_primary_with_an_empty_revision(
    seeded: ServedEmulator,
) -> None:
    seeded.put(DEPLOYMENTS, podinfo_deployment(name="podinfo-primary", replicas=3))

    state = make_target(seeded).initialize()

    assert not state.created_primary
    assert state.primary_replicas == 3
    assert state.primary_revision == ""


def test_initialize_copies_the_autoscaler_for_the_primary(seeded: ServedEmulator) -> None:
    make_target(seeded, autoscaler_name="podinfo").initialize()

    copied = seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")
    original = seeded.get(AUTOSCALERS, NAMESPACE, "podinfo")
    assert copied["spec"] == {
        **original["spec"],
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "podinfo-primary",
        },
    }
    assert original["spec"]["scaleTargetRef"]["name"] == "podinfo"


def test_initialize_with_a_missing_autoscaler_is_permanent(kube: ServedEmulator) -> None:
    kube.put(DEPLOYMENTS, podinfo_deployment())

    with pytest.raises(PermanentError, match=r"^horizontalpodautoscaler test/podinfo not found$"):
        make_target(kube, autoscaler_name="podinfo").initialize()


def test_initialize_creates_apex_primary_and_canary_services(seeded: ServedEmulator) -> None:
    make_target(seeded, service=SERVICE).initialize()

    port = {"name": "http", "port": 9898, "targetPort": "http", "protocol": "TCP"}
    selectors = {
        "podinfo": {"app": "podinfo-primary"},
        "podinfo-primary": {"app": "podinfo-primary"},
        "podinfo-canary": {"app": "podinfo"},
    }
    for name, selector in selectors.items():
        service = seeded.get(SERVICES, NAMESPACE, name)
        assert service["spec"] == {"type": "ClusterIP", "selector": selector, "ports": [port]}


def test_initialize_takes_over_an_existing_apex_service(seeded: ServedEmulator) -> None:
    seeded.put(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.0.0.7",
                "selector": {"app": "podinfo", "tier": "web"},
                "ports": [{"name": "web", "port": 80, "targetPort": 9898, "protocol": "TCP"}],
            },
        },
    )
    settings = ServiceSettings(name="podinfo", port=80)

    make_target(seeded, service=settings).initialize()

    apex = seeded.get(SERVICES, NAMESPACE, "podinfo")
    assert apex["spec"] == {
        "type": "ClusterIP",
        "clusterIP": "10.0.0.7",
        "selector": {"app": "podinfo-primary"},
        "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
    }


def test_initialize_labels_the_services_it_creates(seeded: ServedEmulator) -> None:
    make_target(seeded, service=SERVICE).initialize()

    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        assert seeded.get(SERVICES, NAMESPACE, name)["metadata"]["labels"] == {"app": name}


def with_sidecar(deployment: dict[str, Any]) -> dict[str, Any]:
    """Flagger's podinfo with a gRPC port and an injected Istio proxy."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    containers[0]["ports"].append({"containerPort": 9999, "protocol": "TCP"})
    containers.append(
        {
            "name": "istio-proxy",
            "image": "istio/proxyv2",
            "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
        }
    )
    return deployment


def test_port_discovery_exposes_every_other_container_port(kube: ServedEmulator) -> None:
    kube.put(DEPLOYMENTS, with_sidecar(podinfo_deployment()))
    settings = ServiceSettings(
        name="podinfo", port=9898, target_port="http", port_discovery=True, app_protocol="http"
    )

    make_target(kube, service=settings).initialize()

    expected = [
        {
            "name": "http",
            "port": 9898,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {"name": "http-metrics", "port": 9797, "targetPort": 9797, "protocol": "TCP"},
        {"name": "tcp-podinfod-2", "port": 9999, "targetPort": 9999, "protocol": "TCP"},
    ]
    for name in ("podinfo", "podinfo-primary", "podinfo-canary"):
        assert kube.get(SERVICES, NAMESPACE, name)["spec"]["ports"] == expected


@pytest.mark.parametrize(("port", "target_port"), [(9898, None), (80, 9898), (80, "http")], ids=str)
def test_port_discovery_leaves_out_the_main_port(
    seeded: ServedEmulator, port: int, target_port: int | str | None
) -> None:
    settings = ServiceSettings(
        name="podinfo", port=port, target_port=target_port, port_discovery=True
    )

    make_target(seeded, service=settings).initialize()

    ports = seeded.get(SERVICES, NAMESPACE, "podinfo-canary")["spec"]["ports"]
    assert [(item["name"], item["port"]) for item in ports] == [
        ("http", port),
        ("http-metrics", 9797),
    ]


def test_without_port_discovery_the_services_have_the_main_port_only(
    kube: ServedEmulator,
) -> None:
    kube.put(DEPLOYMENTS, with_sidecar(podinfo_deployment()))

    make_target(kube, service=SERVICE).initialize()

    assert len(kube.get(SERVICES, NAMESPACE, "podinfo")["spec"]["ports"]) == 1


def test_each_service_gets_its_own_labels_and_annotations(seeded: ServedEmulator) -> None:
    settings = ServiceSettings(
        name="podinfo",
        port=9898,
        apex=ServiceMetadata(labels={"tier": "apex"}, annotations={"a": "apex"}),
        primary=ServiceMetadata(labels={"tier": "primary"}),
        canary=ServiceMetadata(annotations={"a": "canary"}),
    )

    make_target(seeded, service=settings).initialize()

    metadata = {
        name: seeded.get(SERVICES, NAMESPACE, name)["metadata"]
        for name in ("podinfo", "podinfo-primary", "podinfo-canary")
    }
    assert metadata["podinfo"]["labels"] == {"tier": "apex", "app": "podinfo"}
    assert metadata["podinfo"]["annotations"] == {"a": "apex"}
    assert metadata["podinfo-primary"]["labels"] == {"tier": "primary", "app": "podinfo-primary"}
    assert "annotations" not in metadata["podinfo-primary"]
    assert metadata["podinfo-canary"]["labels"] == {"app": "podinfo-canary"}
    assert metadata["podinfo-canary"]["annotations"] == {"a": "canary"}


def test_existing_services_get_the_metadata_and_keep_their_own(seeded: ServedEmulator) -> None:
    make_target(seeded, service=SERVICE).initialize()
    settings = ServiceSettings(
        name="podinfo",
        port=9898,
        target_port="http",
        canary=ServiceMetadata(labels={"tier": "canary"}, annotations={"a": "canary"}),
    )

    make_target(seeded, service=settings).initialize()

    canary = seeded.get(SERVICES, NAMESPACE, "podinfo-canary")["metadata"]
    assert canary["labels"] == {"app": "podinfo-canary", "tier": "canary"}
    assert canary["annotations"] == {"a": "canary"}


def test_initialize_is_idempotent(seeded: ServedEmulator) -> None:
    target = make_target(seeded, autoscaler_name="podinfo", service=SERVICE)
    target.initialize()
    objects = {key: obj.raw for key, obj in seeded.emulator.objects.items()}
    writes = seeded.writes()

    target.initialize()

    assert seeded.writes() == writes
    assert {key: obj.raw for key, obj in seeded.emulator.objects.items()} == objects
    assert len(objects) == 2 + 2 + 3


def test_set_image_changes_the_first_container_by_default(seeded: ServedEmulator) -> None:
    make_target(seeded).set_image(NEW_IMAGE)

    containers = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["template"]["spec"][
        "containers"
    ]
    assert [container["image"] for container in containers] == [NEW_IMAGE]
    assert containers[0]["ports"][0]["containerPort"] == 9898


def test_set_image_changes_only_the_named_container(kube: ServedEmulator) -> None:
    deployment = podinfo_deployment()
    containers = deployment["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "proxy", "image": "envoyproxy/envoy:v1.30.0"})
    kube.put(DEPLOYMENTS, deployment)
    target = make_target(kube)

    target.set_image("envoyproxy/envoy:v1.31.0", container="proxy")
    writes = kube.writes()
    target.set_image("envoyproxy/envoy:v1.31.0", container="proxy")

    assert kube.writes() == writes
    stored = kube.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in stored] == [
        ("podinfod", IMAGE),
        ("proxy", "envoyproxy/envoy:v1.31.0"),
    ]


def test_set_image_patches_only_the_version_it_read(kube: ServedEmulator) -> None:
    deployment = podinfo_deployment()
    deployment["metadata"]["resourceVersion"] = "41"
    kube.put(DEPLOYMENTS, deployment)

    make_target(kube).set_image(NEW_IMAGE)

    patch = list(kube.emulator)[-1]
    assert patch.method == "PATCH"
    assert patch.data["metadata"] == {"resourceVersion": "41"}


def test_set_image_of_an_unknown_container_is_permanent(seeded: ServedEmulator) -> None:
    with pytest.raises(PermanentError, match=r"test/podinfo has no container 'sidecar'"):
        make_target(seeded).set_image(NEW_IMAGE, container="sidecar")
    assert seeded.writes() == 0


def test_scale_canary(seeded: ServedEmulator) -> None:
    target = make_target(seeded)

    target.scale_canary(0)
    assert seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["replicas"] == 0
    target.scale_canary(3)
    target.scale_canary(3)
    assert seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("status", "ready", "message"),
    [
        ({}, False, "deployment test/podinfo: 0 of 2 replicas ready"),
        ({"readyReplicas": 1}, False, "deployment test/podinfo: 1 of 2 replicas ready"),
        ({"readyReplicas": 2}, True, "deployment test/podinfo: 2 of 2 replicas ready"),
        (
            {"readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2},
            False,
            "deployment test/podinfo: 1 of 2 replicas updated",
        ),
        (
            {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
            False,
            "deployment test/podinfo: 1 of 2 replicas available",
        ),
        (
            {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 2, "availableReplicas": 3},
            False,
            "deployment test/podinfo: 1 old replicas pending termination",
        ),
        (
            {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
            True,
            "deployment test/podinfo: 2 of 2 replicas ready",
        ),
    ],
)
def test_canary_readiness_follows_the_status(
    seeded: ServedEmulator, status: dict[str, int], ready: bool, message: str
) -> None:
    seeded.set_status(DEPLOYMENTS, NAMESPACE, "podinfo", status)

    readiness = make_target(seeded).canary_readiness()

    assert (readiness.ready, readiness.message) == (ready, message)


def test_readiness_of_a_controller_status_counts_missing_fields_as_zero(
    seeded: ServedEmulator,
) -> None:
    deployment = podinfo_deployment()
    deployment["metadata"]["generation"] = 4
    deployment["status"] = {"observedGeneration": 4, "replicas": 2, "readyReplicas": 2}
    seeded.put(DEPLOYMENTS, deployment)

    readiness = make_target(seeded).canary_readiness()

    assert not readiness.ready
    assert readiness.message == (
        "deployment test/podinfo: 0 of 2 replicas updated, 0 of 2 replicas available, "
        "2 old replicas pending termination"
    )


def test_readiness_waits_for_the_controller_to_observe_the_generation(
    seeded: ServedEmulator,
) -> None:
    deployment = podinfo_deployment()
    deployment["metadata"]["generation"] = 5
    deployment["status"] = {
        "observedGeneration": 4,
        "replicas": 2,
        "readyReplicas": 2,
        "updatedReplicas": 2,
        "availableReplicas": 2,
    }
    seeded.put(DEPLOYMENTS, deployment)
    target = make_target(seeded)

    assert target.canary_readiness().message == (
        "deployment test/podinfo: generation 5 not yet observed"
    )
    seeded.set_status(
        DEPLOYMENTS, NAMESPACE, "podinfo", {**deployment["status"], "observedGeneration": 5}
    )
    assert target.canary_readiness().ready


def test_primary_readiness(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    target.initialize()

    assert target.primary_readiness().message == (
        "deployment test/podinfo-primary: 0 of 2 replicas ready"
    )
    seeded.set_status(DEPLOYMENTS, NAMESPACE, "podinfo-primary", {"readyReplicas": 2})
    assert target.primary_readiness().ready


def test_promote_copies_the_canary_template_to_the_primary(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    target.initialize()
    target.set_image(NEW_IMAGE)
    canary = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")
    canary["spec"]["minReadySeconds"] = 10
    del canary["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
    seeded.put(DEPLOYMENTS, canary)

    target.promote()

    primary = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    template = primary["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert template["metadata"] == {
        "labels": {"app": "podinfo-primary"},
        "annotations": {"prometheus.io/scrape": "true"},
    }
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert primary["spec"]["minReadySeconds"] == 10
    assert primary["spec"]["replicas"] == 2
    assert primary["metadata"]["annotations"] == {REVISION_ANNOTATION: target.canary_revision()}


def test_promote_is_idempotent(seeded: ServedEmulator) -> None:
    target = make_target(seeded, autoscaler_name="podinfo")
    target.initialize()
    target.set_image(NEW_IMAGE)
    target.promote()
    primary = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    writes = seeded.writes()

    target.promote()

    assert seeded.writes() == writes
    assert seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary") == primary


def change_the_autoscaler(kube: ServedEmulator) -> None:
    """The user's HPA as a new release changes it: maxReplicas 8 and a scale-down behavior."""
    autoscaler = podinfo_autoscaler()
    autoscaler["spec"]["maxReplicas"] = 8
    autoscaler["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    kube.put(AUTOSCALERS, autoscaler)


def test_promote_syncs_the_primary_autoscaler(seeded: ServedEmulator) -> None:
    target = make_target(seeded, autoscaler_name="podinfo")
    target.initialize()
    change_the_autoscaler(seeded)

    target.initialize()
    assert seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"]["maxReplicas"] == 4
    target.promote()

    copied = seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"]
    assert copied["maxReplicas"] == 8
    assert copied["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    assert copied["scaleTargetRef"]["name"] == "podinfo-primary"


def test_restore_primary_gives_back_the_template_initialize_saw(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    state = target.initialize()
    before = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    target.set_image(NEW_IMAGE)
    canary = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo")
    canary["spec"]["minReadySeconds"] = 10
    del canary["spec"]["revisionHistoryLimit"]
    canary["spec"]["strategy"] = {"type": "Recreate"}
    canary["spec"]["template"]["metadata"]["annotations"]["team"] = "web"
    seeded.put(DEPLOYMENTS, canary)
    target.promote()
    promoted = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    assert promoted["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert "revisionHistoryLimit" not in promoted["spec"]

    assert state.primary_snapshot is not None
    target.restore_primary(state.primary_snapshot)

    restored = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    assert restored == before
    spec = restored["spec"]
    assert spec["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert spec["template"]["metadata"] == {
        "labels": {"app": "podinfo-primary"},
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"},
    }
    assert spec["minReadySeconds"] == 3
    assert spec["revisionHistoryLimit"] == 5
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert restored["metadata"]["annotations"] == {REVISION_ANNOTATION: state.primary_revision}
    # the canary keeps the new version; the next rollout sees the primary as it was
    assert target.canary_revision() != state.primary_revision
    again = target.initialize()
    assert again.primary_revision == state.primary_revision
    assert again.primary_snapshot == state.primary_snapshot


def test_restore_primary_gives_back_the_autoscaler_initialize_saw(
    seeded: ServedEmulator,
) -> None:
    target = make_target(seeded, autoscaler_name="podinfo")
    state = target.initialize()
    before = seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"]
    change_the_autoscaler(seeded)
    target.promote()
    assert seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"]["maxReplicas"] == 8

    assert state.primary_snapshot is not None
    target.restore_primary(state.primary_snapshot)

    assert seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"] == before
    writes = seeded.writes()
    target.restore_primary(state.primary_snapshot)
    assert seeded.writes() == writes


def test_restore_primary_from_a_snapshot_without_the_autoscaler_leaves_it(
    seeded: ServedEmulator,
) -> None:
    """Snapshots of rollouts started before they held the HPA copy's spec."""
    target = make_target(seeded, autoscaler_name="podinfo")
    state = target.initialize()
    change_the_autoscaler(seeded)
    target.promote()
    assert state.primary_snapshot is not None
    saved = json.loads(state.primary_snapshot)
    del saved["autoscaler"]

    target.restore_primary(json.dumps(saved))

    assert seeded.get(AUTOSCALERS, NAMESPACE, "podinfo-primary")["spec"]["maxReplicas"] == 8


def test_restore_primary_is_idempotent(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    state = target.initialize()
    assert state.primary_snapshot is not None
    target.set_image(NEW_IMAGE)
    target.promote()
    target.restore_primary(state.primary_snapshot)
    restored = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    writes = seeded.writes()

    target.restore_primary(state.primary_snapshot)

    assert seeded.writes() == writes
    assert seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary") == restored


def test_restore_primary_leaves_an_unannotated_primary_unannotated(
    seeded: ServedEmulator,
) -> None:
    seeded.put(DEPLOYMENTS, podinfo_deployment(name="podinfo-primary", replicas=3))
    target = make_target(seeded)
    state = target.initialize()
    assert state.primary_revision == ""
    target.set_image(NEW_IMAGE)
    target.promote()
    promoted = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    assert REVISION_ANNOTATION in promoted["metadata"]["annotations"]

    assert state.primary_snapshot is not None
    target.restore_primary(state.primary_snapshot)

    restored = seeded.get(DEPLOYMENTS, NAMESPACE, "podinfo-primary")
    assert REVISION_ANNOTATION not in (restored["metadata"].get("annotations") or {})
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert restored["spec"]["replicas"] == 3


def test_restore_primary_refuses_an_unreadable_snapshot(seeded: ServedEmulator) -> None:
    target = make_target(seeded)
    target.initialize()
    writes = seeded.writes()

    with pytest.raises(
        PermanentError,
        match=r"^cannot restore deployment test/podinfo-primary: the saved template is unreadable",
    ):
        target.restore_primary('{"spec": {}}')
    assert seeded.writes() == writes


def test_restore_without_a_primary_is_permanent(seeded: ServedEmulator) -> None:
    snapshot = '{"revision": "abc", "spec": {}}'
    with pytest.raises(PermanentError, match=r"^deployment test/podinfo-primary not found$"):
        make_target(seeded).restore_primary(snapshot)


def test_promote_without_a_primary_is_permanent(seeded: ServedEmulator) -> None:
    with pytest.raises(PermanentError, match=r"^deployment test/podinfo-primary not found$"):
        make_target(seeded).promote()


@pytest.mark.parametrize(
    "call",
    [
        lambda target: target.initialize(),
        lambda target: target.set_image(NEW_IMAGE),
        lambda target: target.scale_canary(1),
        lambda target: target.canary_readiness(),
        lambda target: target.promote(),
        lambda target: target.canary_revision(),
    ],
)
def test_a_missing_target_is_permanent(kube: ServedEmulator, call: Any) -> None:
    with pytest.raises(PermanentError, match=r"^deployment test/podinfo not found$"):
        call(make_target(kube))


def test_an_rbac_refusal_to_read_is_permanent(seeded: ServedEmulator) -> None:
    seeded.refuse("get", DEPLOYMENTS)

    with pytest.raises(PermanentError) as raised:
        make_target(seeded).canary_readiness()

    message = str(raised.value)
    assert message.startswith("RBAC refusal: not allowed to get deployments.apps in namespace test")


def test_an_rbac_refusal_to_create_is_permanent(seeded: ServedEmulator) -> None:
    seeded.refuse("post", SERVICES)

    with pytest.raises(
        PermanentError, match=r"^RBAC refusal: not allowed to create services in namespace test"
    ):
        make_target(seeded, service=SERVICE).initialize()


def test_an_unauthorized_client_is_permanent(seeded: ServedEmulator) -> None:
    seeded.refuse("patch", DEPLOYMENTS, status=401, reason="Unauthorized")

    with pytest.raises(PermanentError, match=r"^unauthorized: .* to patch deployments.apps"):
        make_target(seeded).scale_canary(0)


def test_server_errors_propagate_to_be_retried(seeded: ServedEmulator) -> None:
    seeded.refuse("get", DEPLOYMENTS, status=503, reason="ServiceUnavailable")

    with pytest.raises(kubernetes.client.ApiException) as raised:
        make_target(seeded).canary_revision()
    assert raised.value.status == 503


def test_api_client_from_environment_reads_kubeconfig_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://10.1.2.3:6443'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    with kube_client.api_client_from_environment() as api:
        assert api.configuration.host == "https://10.1.2.3:6443"
