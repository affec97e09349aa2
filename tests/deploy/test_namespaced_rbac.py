"""deploy/namespaced/: the kustomize Component that swaps the ClusterRole for a Role and
RoleBinding per namespace and sets the worker's COALMINE_NAMESPACES to the same namespaces.

The overlay `resources: [../deploy]`, `components: [../deploy/namespaced]` is built here the
way kustomize builds it: the base's objects, the component's resources, its `$patch: delete`
patches removing objects and its ConfigMap patch merging data."""

from pathlib import Path
from typing import Any

import yaml

from worker import command

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPONENT = DEPLOY / "namespaced"
WORKER_NAMESPACE = "coalmine-system"


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def key(obj: dict[str, Any]) -> tuple[str, str, str | None]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")


def base_objects() -> list[dict[str, Any]]:
    [kustomization] = documents(DEPLOY / "kustomization.yaml")
    return [obj for name in kustomization["resources"] for obj in documents(DEPLOY / name)]


def component() -> dict[str, Any]:
    [kustomization] = documents(COMPONENT / "kustomization.yaml")
    return kustomization


def patches() -> list[dict[str, Any]]:
    return [doc for patch in component()["patches"] for doc in documents(COMPONENT / patch["path"])]


def built() -> list[dict[str, Any]]:
    """The objects of the overlay, as `kubectl kustomize` renders them."""
    objects = {key(obj): obj for obj in base_objects()}
    for name in component()["resources"]:
        for obj in documents(COMPONENT / name):
            assert key(obj) not in objects, f"{name} redefines {key(obj)}"
            objects[key(obj)] = obj
    for patch in patches():
        target = key(patch)
        assert target in objects, f"the patch for {target} matches no object of deploy/"
        if patch.get("$patch") == "delete":
            del objects[target]
        else:
            assert set(patch) == {"apiVersion", "kind", "metadata", "data"}, patch
            objects[target] = {
                **objects[target],
                "data": {**objects[target].get("data", {}), **patch["data"]},
            }
    return list(objects.values())


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def test_the_component_parses_and_is_a_kustomize_component() -> None:
    kustomization = component()
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    listed = {*kustomization["resources"], *(p["path"] for p in kustomization["patches"])}
    present = {path.name for path in COMPONENT.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_no_cluster_wide_grant_is_left() -> None:
    objects = built()
    assert of_kind(objects, "ClusterRole") == []
    assert of_kind(objects, "ClusterRoleBinding") == []
    assert of_kind(base_objects(), "ClusterRole"), "the base still grants cluster-wide"


def test_each_namespace_of_the_worker_gets_the_cluster_roles_rules() -> None:
    objects = built()
    [config] = [obj for obj in of_kind(objects, "ConfigMap") if "TEMPORAL_ADDRESS" in obj["data"]]
    allowed = command.namespaces(config["data"]["COALMINE_NAMESPACES"])
    assert allowed, "the worker's COALMINE_NAMESPACES is empty"
    assert config["data"]["TEMPORAL_ADDRESS"], "the patch must keep the base's data"

    [cluster_role] = of_kind(base_objects(), "ClusterRole")
    roles = of_kind(objects, "Role")
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted(allowed)
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == sorted(allowed)
    for role in roles:
        assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert granted(role) == granted(cluster_role), role["metadata"]["namespace"]
    account = of_kind(objects, "ServiceAccount")[0]["metadata"]
    for binding in bindings:
        [role] = [
            r for r in roles if r["metadata"]["namespace"] == binding["metadata"]["namespace"]
        ]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": WORKER_NAMESPACE}
        ]
