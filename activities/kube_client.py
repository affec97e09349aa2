"""What the Kubernetes providers share: the API client, error translation and merge patches."""

import contextlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kubernetes

from activities import errors

MERGE_PATCH = "application/merge-patch+json"
"""Content type of every patch: plain JSON merge patch (RFC 7386), never strategic merge."""

T = TypeVar("T")


@dataclass(frozen=True)
class Resource:
    """A resource type: its `kind`, and its `plural` qualified by group as RBAC rules name it."""

    kind: str
    plural: str


def api_client_from_environment() -> kubernetes.client.ApiClient:
    """In-cluster credentials inside a pod, else the kubeconfig (`KUBECONFIG` or the default)."""
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        # The library reads KUBECONFIG once at import; pass it so a later change is seen.
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"),
            client_configuration=configuration,
        )
    return kubernetes.client.ApiClient(configuration)


@contextlib.contextmanager
def api_errors(verb: str, resource: Resource, namespace: str, name: str) -> Iterator[None]:
    """Turn the API answers that no retry can fix into `PermanentError`.

    404, 401, 403, 400 and 422 are permanent; anything else (409, 429, 5xx, connection
    errors) propagates unchanged to be retried.
    """
    try:
        yield
    except kubernetes.client.ApiException as exc:
        message = _permanent_message(exc, verb, resource, namespace, name)
        if message is None:
            raise
        raise errors.PermanentError(message) from exc


def read_optional(read: Callable[[], T]) -> T | None:
    """The result of `read`, or None when the object does not exist."""
    try:
        return read()
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `current` into `desired` (empty when they are equal).

    Keys of `current` missing from `desired` are removed; lists are replaced whole.
    """
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in current or old != value:
            patch[key] = value
    return patch


def metadata_patch(
    metadata: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The merge patch of `metadata` that sets these labels and annotations (empty when they
    are set); the object's other labels and annotations stay."""
    patch: dict[str, Any] = {}
    for key, wanted in (("labels", labels), ("annotations", annotations)):
        current = metadata.get(key) or {}
        if changed := {name: value for name, value in wanted.items() if current.get(name) != value}:
            patch[key] = changed
    return patch


def new_object(
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    """The body that creates an object with `spec`, labels and annotations."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": dict(spec)}


def object_patch(
    existing: Mapping[str, Any],
    spec: Mapping[str, Any],
    owned: Collection[str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    """The merge patch that brings the `owned` fields of `existing`'s spec to `spec` and adds
    these labels and annotations (empty when it has them all); the rest stays."""
    current = {key: value for key, value in (existing.get("spec") or {}).items() if key in owned}
    patch: dict[str, Any] = {}
    if spec_patch := merge_patch(current, spec):
        patch["spec"] = spec_patch
    if meta_patch := metadata_patch(existing.get("metadata") or {}, labels, annotations):
        patch["metadata"] = meta_patch
    return patch


def _permanent_message(
    exc: kubernetes.client.ApiException, verb: str, resource: Resource, namespace: str, name: str
) -> str | None:
    reason = _server_message(exc)
    kind = resource.kind.lower()
    detail = f" ({reason})" if reason else ""
    match exc.status:
        case 404 if verb == "create":
            return (
                f"cannot create {kind} {namespace}/{name}: namespace {namespace} "
                f"or the {resource.plural} API does not exist{detail}"
            )
        case 404:
            return f"{kind} {namespace}/{name} not found"
        case 403:
            return (
                f"RBAC refusal: not allowed to {verb} {resource.plural} "
                f"in namespace {namespace}{detail}"
            )
        case 401:
            return (
                f"unauthorized: the Kubernetes API rejected the credentials "
                f"to {verb} {resource.plural} in namespace {namespace}{detail}"
            )
        case 400 | 422:
            return f"cannot {verb} {kind} {namespace}/{name}: invalid request{detail}"
    return None


def _server_message(exc: kubernetes.client.ApiException) -> str:
    """The `message` of the Status object the API server answered with, if any."""
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else ""
