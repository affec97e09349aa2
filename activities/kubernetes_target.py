"""Kubernetes target: an apps/v1 Deployment, with Flagger's naming.

The user's Deployment `<name>` is the canary; coalmine keeps a copy `<name>-primary` whose
selector and pod labels carry `<value>-primary` in place of the app label's value, so the two
never select each other's pods. Optional companions: an HPA copy `<hpa>-primary` scaling the
primary, and the Services `<svc>` (apex), `<svc>-primary` and `<svc>-canary`.
"""

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
import pydantic

from activities import errors, kube_client
from canary.contract import Readiness, TargetState

REVISION_ANNOTATION = "coalmine.dev/revision"
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
"""Selector labels that name the app, in Flagger's order of preference."""

PROMOTED_SPEC_FIELDS = (
    "template",
    "strategy",
    "minReadySeconds",
    "progressDeadlineSeconds",
    "revisionHistoryLimit",
)
"""Deployment spec fields that promotion copies from the canary to the primary."""

DEPLOYMENT = kube_client.Resource("Deployment", "deployments.apps")
AUTOSCALER = kube_client.Resource("HorizontalPodAutoscaler", "horizontalpodautoscalers.autoscaling")
SERVICE = kube_client.Resource("Service", "services")
CONFIG_MAP = kube_client.Resource("ConfigMap", "configmaps")
SECRET = kube_client.Resource("Secret", "secrets")


SIDECAR_CONTAINERS = frozenset({"istio-proxy", "envoy"})
"""Mesh proxies whose ports port discovery leaves out, as Flagger does."""


@dataclass(frozen=True)
class ServiceMetadata:
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    port: int
    target_port: int | str | None = None
    port_name: str = "http"
    app_protocol: str | None = None
    port_discovery: bool = False
    """Also expose every other container port of the target (Flagger's portDiscovery)."""
    apex: ServiceMetadata = ServiceMetadata()
    primary: ServiceMetadata = ServiceMetadata()
    canary: ServiceMetadata = ServiceMetadata()
    """Labels and annotations of `<svc>`, `<svc>-primary` and `<svc>-canary`."""

    @property
    def main_port(self) -> dict[str, Any]:
        port: dict[str, Any] = {
            "name": self.port_name,
            "port": self.port,
            "targetPort": self.port if self.target_port is None else self.target_port,
            "protocol": "TCP",
        }
        if self.app_protocol:
            port["appProtocol"] = self.app_protocol
        return port

    def ports(self, containers: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The main port, then (with port discovery) each other port of `containers` but the
        mesh proxies', named as the container names it (else `tcp-<container>-<index>`)."""
        ports = [self.main_port]
        if not self.port_discovery:
            return ports
        for container in containers:
            if container.get("name") in SIDECAR_CONTAINERS:
                continue
            for index, item in enumerate(container.get("ports") or []):
                number = item.get("containerPort")
                name = item.get("name") or f"tcp-{container.get('name')}-{index}"
                if self._is_main(name, number) or any(
                    name == port["name"] or number == port["port"] for port in ports
                ):
                    continue
                ports.append(
                    {"name": name, "port": number, "targetPort": number, "protocol": "TCP"}
                )
        return ports

    def _is_main(self, name: str, number: int) -> bool:
        if self.target_port is None:
            return number == self.port
        return self.target_port in (name, number)


def template_revision(template: Mapping[str, Any]) -> str:
    """A short stable digest of a pod template: sha256 of its canonical JSON."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


ConfigRef = tuple[str, str]
"""("ConfigMap" or "Secret", name)."""


def config_refs(template: Mapping[str, Any]) -> list[ConfigRef]:
    """The ConfigMaps and Secrets a pod template uses (volumes, projected volumes, env and
    envFrom of every container), as Flagger tracks them: a change to one is a new revision."""
    spec = template.get("spec") or {}
    found: set[ConfigRef] = set()
    for volume in spec.get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            if name := (source.get("configMap") or {}).get("name"):
                found.add(("ConfigMap", name))
            secret = source.get("secret") or {}
            if name := secret.get("secretName") or secret.get("name"):
                found.add(("Secret", name))
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for container in containers:
        for item in container.get("envFrom") or []:
            if name := (item.get("configMapRef") or {}).get("name"):
                found.add(("ConfigMap", name))
            if name := (item.get("secretRef") or {}).get("name"):
                found.add(("Secret", name))
        for variable in container.get("env") or []:
            source = variable.get("valueFrom") or {}
            if name := (source.get("configMapKeyRef") or {}).get("name"):
                found.add(("ConfigMap", name))
            if name := (source.get("secretKeyRef") or {}).get("name"):
                found.add(("Secret", name))
    return sorted(found)


def ready_count(desired: int, threshold_percent: int) -> int:
    """Replicas that must be ready for `threshold_percent` of `desired` (at least one)."""
    return max(1, math.ceil(desired * threshold_percent / 100)) if desired > 0 else 0


class KubernetesTarget:
    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        autoscaler_name: str | None = None,
        service: ServiceSettings | None = None,
        canary_ready_threshold: int = 100,
        primary_ready_threshold: int = 100,
    ) -> None:
        """Thresholds are Flagger's `canaryReadyThreshold` and `primaryReadyThreshold`: the
        percent of replicas that must be ready."""
        self.canary_ready_threshold = canary_ready_threshold
        self.primary_ready_threshold = primary_ready_threshold
        self._apps = kubernetes.client.AppsV1Api(api)
        self._autoscaling = kubernetes.client.AutoscalingV2Api(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.name = name
        self.primary_name = f"{name}-primary"
        self.autoscaler_name = autoscaler_name
        self.service = service

    def initialize(self) -> TargetState:
        """Create the primary and its HPA when missing (existing ones stay as they are) and
        bring the Services to the settings."""
        target = self._read_deployment(self.name)
        label, value = _selector_label(target, self.namespace, self.name)
        canary_revision = self._revision(target)
        with kube_client.api_errors("get", DEPLOYMENT, self.namespace, self.primary_name):
            primary_model = kube_client.read_optional(
                lambda: self._apps.read_namespaced_deployment(self.primary_name, self.namespace)
            )
        created = primary_model is None
        if primary_model is None:
            primary = self._primary_from(target, label, value, canary_revision)
            with kube_client.api_errors("create", DEPLOYMENT, self.namespace, self.primary_name):
                self._apps.create_namespaced_deployment(
                    self.namespace, kubernetes.client.V1Deployment.model_validate(primary)
                )
        else:
            primary = _as_dict(primary_model)
        snapshot: dict[str, Any] = {"spec": _spec_fields(primary["spec"])}
        if self.autoscaler_name is not None:
            snapshot["autoscaler"] = self._ensure_primary_autoscaler(
                self.autoscaler_name, update=False
            )
        if self.service is not None:
            self._ensure_services(self.service, target, label, value)
        annotations = primary["metadata"].get("annotations") or {}
        primary_revision = annotations.get(REVISION_ANNOTATION, "")
        snapshot["revision"] = primary_revision
        return TargetState(
            primary_replicas=primary["spec"].get("replicas", 1),
            created_primary=created,
            canary_revision=canary_revision,
            primary_revision=primary_revision,
            primary_snapshot=json.dumps(snapshot, sort_keys=True),
        )

    def set_image(self, image: str, container: str | None = None) -> None:
        """Set the image of `container` (default: the first) in the canary's pod template."""
        target = self._read_deployment(self.name)
        containers = target["spec"]["template"]["spec"]["containers"]
        names = [item["name"] for item in containers]
        wanted = container if container is not None else next(iter(names), "")
        if wanted not in names:
            raise errors.PermanentError(
                f"deployment {self.namespace}/{self.name} has no container {wanted!r} "
                f"(containers: {', '.join(names) or 'none'})"
            )
        index = names.index(wanted)
        if containers[index].get("image") == image:
            return
        containers[index]["image"] = image
        self._patch_deployment(
            self.name,
            _guarded({"spec": {"template": {"spec": {"containers": containers}}}}, target),
        )

    def scale_canary(self, replicas: int) -> None:
        self._patch_deployment(self.name, {"spec": {"replicas": replicas}})

    def canary_readiness(self) -> Readiness:
        deployment = self._read_deployment(self.name)
        return _readiness(deployment, self.namespace, self.canary_ready_threshold)

    def primary_readiness(self) -> Readiness:
        deployment = self._read_deployment(self.primary_name)
        return _readiness(deployment, self.namespace, self.primary_ready_threshold)

    def promote(self, revision: str | None = None) -> str:
        """Copy the canary's pod template (relabelled) and rollout settings to the primary,
        exactly as read, while the template is `revision` (None: any); answer its revision."""
        target = self._read_deployment(self.name)
        found = self._revision(target)
        if revision is not None and found != revision:
            return found
        label, value = _selector_label(target, self.namespace, self.name)
        primary = self._read_deployment(self.primary_name)
        desired = _promoted_fields(target["spec"], label, value)
        self._set_primary(primary, desired, found)
        if self.autoscaler_name is not None:
            self._ensure_primary_autoscaler(self.autoscaler_name, update=True)
        return found

    def restore_primary(self, snapshot: str) -> None:
        """Give the primary back the promoted fields and revision `initialize` read from it,
        and its HPA copy the spec it had (snapshots taken before they held it leave it)."""
        try:
            saved = json.loads(snapshot)
            fields, revision = saved["spec"], saved["revision"]
            autoscaler = saved.get("autoscaler")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise errors.PermanentError(
                f"cannot restore deployment {self.namespace}/{self.primary_name}: "
                f"the saved template is unreadable ({error!r})"
            ) from None
        primary = self._read_deployment(self.primary_name)
        self._set_primary(primary, fields, revision)
        if self.autoscaler_name is not None and isinstance(autoscaler, dict):
            self._set_primary_autoscaler(f"{self.autoscaler_name}-primary", autoscaler)

    def _set_primary(
        self, primary: Mapping[str, Any], fields: Mapping[str, Any], revision: str
    ) -> None:
        """Patch the primary's promoted fields and revision annotation (none when `revision`
        is empty) to these, where they differ."""
        patch: dict[str, Any] = {}
        if spec_patch := kube_client.merge_patch(_spec_fields(primary["spec"]), fields):
            patch["spec"] = spec_patch
        annotations = primary["metadata"].get("annotations") or {}
        if annotations.get(REVISION_ANNOTATION) != (revision or None):
            patch["metadata"] = {"annotations": {REVISION_ANNOTATION: revision or None}}
        if patch:
            self._patch_deployment(self.primary_name, _guarded(patch, primary))

    def canary_revision(self) -> str:
        return self._revision(self._read_deployment(self.name))

    def _revision(self, deployment: Mapping[str, Any]) -> str:
        """The pod template's digest; with the data of the ConfigMaps and Secrets it uses,
        when it uses any (only digests of their data are kept, never the data)."""
        template = deployment["spec"]["template"]
        refs = config_refs(template)
        if not refs:
            return template_revision(template)
        parts = [template_revision(template)]
        for kind, name in refs:
            parts.append(f"{kind}/{name}={self._config_digest(kind, name)}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def _config_digest(self, kind: str, name: str) -> str:
        found: pydantic.BaseModel | None
        if kind == "ConfigMap":
            with kube_client.api_errors("get", CONFIG_MAP, self.namespace, name):
                found = kube_client.read_optional(
                    lambda: self._core.read_namespaced_config_map(name, self.namespace)
                )
        else:
            with kube_client.api_errors("get", SECRET, self.namespace, name):
                found = kube_client.read_optional(
                    lambda: self._core.read_namespaced_secret(name, self.namespace)
                )
        if found is None:
            return "absent"
        body = _as_dict(found)
        data = {"data": body.get("data") or {}, "binaryData": body.get("binaryData") or {}}
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _read_deployment(self, name: str) -> dict[str, Any]:
        with kube_client.api_errors("get", DEPLOYMENT, self.namespace, name):
            return _as_dict(self._apps.read_namespaced_deployment(name, self.namespace))

    def _patch_deployment(self, name: str, patch: dict[str, Any]) -> None:
        with kube_client.api_errors("patch", DEPLOYMENT, self.namespace, name):
            self._apps.patch_namespaced_deployment(
                name, self.namespace, patch, _content_type=kube_client.MERGE_PATCH
            )

    def _primary_from(
        self, target: Mapping[str, Any], label: str, value: str, revision: str
    ) -> dict[str, Any]:
        primary_value = f"{value}-primary"
        spec = copy.deepcopy(target["spec"])
        spec["replicas"] = max(1, spec.get("replicas", 1))
        selector = spec["selector"]
        selector["matchLabels"] = {**selector["matchLabels"], label: primary_value}
        spec["template"] = _primary_template(spec["template"], label, value)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.primary_name,
                "namespace": self.namespace,
                "labels": {**(target["metadata"].get("labels") or {}), label: primary_value},
                "annotations": {REVISION_ANNOTATION: revision},
            },
            "spec": spec,
        }

    def _ensure_primary_autoscaler(self, name: str, update: bool) -> dict[str, Any]:
        """Create `<hpa>-primary` from the user's HPA; with `update`, also sync its spec.
        Answers the spec `<hpa>-primary` has then."""
        primary_name = f"{name}-primary"
        with kube_client.api_errors("get", AUTOSCALER, self.namespace, name):
            source = _as_dict(
                self._autoscaling.read_namespaced_horizontal_pod_autoscaler(name, self.namespace)
            )
        spec: dict[str, Any] = copy.deepcopy(source["spec"])
        spec["scaleTargetRef"]["name"] = self.primary_name
        with kube_client.api_errors("get", AUTOSCALER, self.namespace, primary_name):
            existing = kube_client.read_optional(
                lambda: self._autoscaling.read_namespaced_horizontal_pod_autoscaler(
                    primary_name, self.namespace
                )
            )
        if existing is None:
            body = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {
                    "name": primary_name,
                    "namespace": self.namespace,
                    "labels": source["metadata"].get("labels") or {},
                },
                "spec": spec,
            }
            with kube_client.api_errors("create", AUTOSCALER, self.namespace, primary_name):
                self._autoscaling.create_namespaced_horizontal_pod_autoscaler(
                    self.namespace, kubernetes.client.V2HorizontalPodAutoscaler.model_validate(body)
                )
            return spec
        current = _as_dict(existing)
        if not update:
            found: dict[str, Any] = current.get("spec") or {}
            return found
        self._patch_autoscaler_spec(primary_name, current, spec)
        return spec

    def _set_primary_autoscaler(self, primary_name: str, spec: Mapping[str, Any]) -> None:
        """Give `<hpa>-primary` this spec again, when it still exists."""
        with kube_client.api_errors("get", AUTOSCALER, self.namespace, primary_name):
            existing = kube_client.read_optional(
                lambda: self._autoscaling.read_namespaced_horizontal_pod_autoscaler(
                    primary_name, self.namespace
                )
            )
        if existing is not None:
            self._patch_autoscaler_spec(primary_name, _as_dict(existing), spec)

    def _patch_autoscaler_spec(
        self, name: str, current: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> None:
        if patch := kube_client.merge_patch(current.get("spec") or {}, spec):
            with kube_client.api_errors("patch", AUTOSCALER, self.namespace, name):
                self._autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                    name,
                    self.namespace,
                    _guarded({"spec": patch}, current),
                    _content_type=kube_client.MERGE_PATCH,
                )

    def _ensure_services(
        self, settings: ServiceSettings, target: Mapping[str, Any], label: str, value: str
    ) -> None:
        ports = settings.ports(target["spec"]["template"]["spec"].get("containers") or [])
        primary_selector = {label: f"{value}-primary"}
        for name, selector, metadata in (
            (settings.name, primary_selector, settings.apex),
            (f"{settings.name}-primary", primary_selector, settings.primary),
            (f"{settings.name}-canary", {label: value}, settings.canary),
        ):
            desired = {"selector": selector, "ports": ports}
            self._ensure_service(name, desired, metadata, created_labels={label: name})

    def _ensure_service(
        self,
        name: str,
        desired: dict[str, Any],
        metadata: ServiceMetadata,
        created_labels: Mapping[str, str],
    ) -> None:
        """Create the Service (labelled `created_labels` and `metadata`'s labels) or bring
        its selector, ports and `metadata` to these; its other labels and annotations stay."""
        with kube_client.api_errors("get", SERVICE, self.namespace, name):
            existing = kube_client.read_optional(
                lambda: self._core.read_namespaced_service(name, self.namespace)
            )
        if existing is None:
            meta: dict[str, Any] = {
                "name": name,
                "namespace": self.namespace,
                "labels": {**metadata.labels, **created_labels},
            }
            if metadata.annotations:
                meta["annotations"] = dict(metadata.annotations)
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"type": "ClusterIP", **desired},
            }
            with kube_client.api_errors("create", SERVICE, self.namespace, name):
                self._core.create_namespaced_service(
                    self.namespace, kubernetes.client.V1Service.model_validate(body)
                )
            return
        current_service = _as_dict(existing)
        spec = current_service.get("spec") or {}
        current = {key: spec[key] for key in desired if key in spec}
        patch: dict[str, Any] = {}
        if spec_patch := kube_client.merge_patch(current, desired):
            patch["spec"] = spec_patch
        if meta_patch := kube_client.metadata_patch(
            current_service.get("metadata") or {}, metadata.labels, metadata.annotations
        ):
            patch["metadata"] = meta_patch
        if patch:
            with kube_client.api_errors("patch", SERVICE, self.namespace, name):
                self._core.patch_namespaced_service(
                    name, self.namespace, patch, _content_type=kube_client.MERGE_PATCH
                )


def _as_dict(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _selector_label(deployment: Mapping[str, Any], namespace: str, name: str) -> tuple[str, str]:
    match_labels = deployment["spec"].get("selector", {}).get("matchLabels") or {}
    for label in SELECTOR_LABELS:
        if label in match_labels:
            return label, match_labels[label]
    raise errors.PermanentError(
        f"deployment {namespace}/{name} spec.selector.matchLabels must contain one of "
        f"{', '.join(SELECTOR_LABELS)}"
    )


def _primary_template(template: Mapping[str, Any], label: str, value: str) -> dict[str, Any]:
    relabelled = copy.deepcopy(dict(template))
    metadata = relabelled.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), label: f"{value}-primary"}
    return relabelled


def _spec_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Deployment spec that promotion copies, as they are."""
    return {key: spec[key] for key in PROMOTED_SPEC_FIELDS if key in spec}


def _promoted_fields(spec: Mapping[str, Any], label: str, value: str) -> dict[str, Any]:
    fields = {key: copy.deepcopy(spec[key]) for key in PROMOTED_SPEC_FIELDS if key in spec}
    fields["template"] = _primary_template(spec["template"], label, value)
    return fields


def _guarded(patch: dict[str, Any], read: Mapping[str, Any]) -> dict[str, Any]:
    """Make the patch conditional on the object being unchanged since `read` (409 otherwise)."""
    resource_version = read.get("metadata", {}).get("resourceVersion")
    if resource_version is None:
        return patch
    metadata = patch.setdefault("metadata", {})
    metadata["resourceVersion"] = resource_version
    return patch


def _readiness(
    deployment: Mapping[str, Any], namespace: str, threshold_percent: int = 100
) -> Readiness:
    """Ready when every replica runs the current template and `threshold_percent` of the
    desired replicas are ready and available.

    A status written by the deployment controller (it has `observedGeneration`) omits zero
    counts, so a missing count is zero there; in any other status only present counts matter.
    """
    metadata = deployment["metadata"]
    subject = f"deployment {namespace}/{metadata['name']}"
    desired = deployment["spec"].get("replicas", 1)
    status = deployment.get("status") or {}
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return Readiness(
            ready=False, message=f"{subject}: generation {generation} not yet observed"
        )
    default = 0 if observed is not None else None
    needed = ready_count(desired, threshold_percent)
    ready = status.get("readyReplicas", 0)
    problems = [] if ready >= needed else [f"{ready} of {desired} replicas ready"]
    for field, word, wanted in (
        ("updatedReplicas", "updated", desired),
        ("availableReplicas", "available", needed),
    ):
        count = status.get(field, default)
        if count is not None and count < wanted:
            problems.append(f"{count} of {desired} replicas {word}")
    updated = status.get("updatedReplicas", default)
    if updated is not None and status.get("replicas", 0) > updated:
        problems.append(f"{status['replicas'] - updated} old replicas pending termination")
    if problems:
        return Readiness(ready=False, message=f"{subject}: {', '.join(problems)}")
    return Readiness(ready=True, message=f"{subject}: {ready} of {desired} replicas ready")
