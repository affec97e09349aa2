"""Where a metric is asked: its provider, address, query and credentials.

A MetricTemplate of the spec file arrives inlined in the metric (see `canary.loader`); any other
is read from the cluster at each query, as Flagger reads it, in the templateRef's namespace (else
the Canary's). The Secret a template names is read next, from the template's namespace. Both
reads are the worker's, at query time, within its `--namespaces`: a Secret's data never enters a
rollout's input, result, history or messages, only its name does.

Reads block: call `MetricSources.resolve` off the event loop.
"""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3

from activities import kube_client
from activities.errors import MetricsUnavailableError, PermanentError
from activities.metrics_http import MetricsAccess
from activities.scope import WorkerScope
from canary import metric_templates, providers
from canary.metric_templates import TemplateProvider
from canary.spec import Canary, Metric

GROUP = "flagger.app"
VERSION = "v1beta1"
PLURAL = "metrictemplates"
TEMPLATE = kube_client.Resource("MetricTemplate", "metrictemplates.flagger.app")
SECRET = kube_client.Resource("Secret", "secrets")
KUBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class MetricSource:
    """How to ask one metric: `query` is its template's (None: a built-in check)."""

    provider_type: str
    address: str
    query: str | None
    access: MetricsAccess
    verify_tls: bool


def template_label(canary: Canary, metric: Metric) -> str | None:
    """`namespace/name` of the metric's MetricTemplate, None when it has none."""
    ref = metric.template_ref
    if ref is None:
        return None
    return metric_templates.label(ref.namespace or canary.metadata.namespace, ref.name)


def needs_cluster(metric: Metric) -> bool:
    """Whether resolving the metric reads the cluster (its template or its Secret)."""
    return metric.from_cluster or metric.metrics_secret_ref is not None


class MetricSources:
    """Resolves metrics to `MetricSource`s; `default_server` is the worker's Prometheus."""

    def __init__(
        self,
        kube_api: Callable[[], kubernetes.client.ApiClient],
        scope: WorkerScope,
        default_server: str,
    ) -> None:
        self._kube_api = kube_api
        self._scope = scope
        self._default_server = default_server

    def resolve(self, canary: Canary, metric: Metric) -> MetricSource:
        """Raises `PermanentError` for what the template or its Secret lacks, and
        `MetricsUnavailableError` when the Kubernetes API does not answer."""
        namespace = canary.metadata.namespace
        if metric.template_ref is not None:
            namespace = metric.template_ref.namespace or namespace
        query = metric.query
        if metric.from_cluster:
            assert metric.template_ref is not None
            template = self._template(namespace, metric.template_ref.name)
            provider, query = template.provider, template.query
        else:
            provider = TemplateProvider(
                type=metric.metrics_provider,
                address=metric.metrics_server,
                secret_ref=metric.metrics_secret_ref,
                headers={name: tuple(values) for name, values in metric.metrics_headers.items()},
                insecure_skip_verify=metric.metrics_insecure_skip_verify,
            )
        credentials: dict[str, str] = {}
        secret = None
        if provider.secret_ref is not None:
            self._scope.require_namespace(namespace, "spec.provider.secretRef")
            secret = f"{namespace}/{provider.secret_ref}"
            credentials = self._secret(namespace, provider.secret_ref)
        access = MetricsAccess(
            credentials=credentials,
            secret=secret,
            headers=provider.headers,
            template=template_label(canary, metric),
            window_seconds=metric.interval,
        )
        return MetricSource(
            provider_type=provider.type,
            address=self._address(canary, metric, provider),
            query=query,
            access=access,
            verify_tls=not provider.insecure_skip_verify,
        )

    def _address(self, canary: Canary, metric: Metric, provider: TemplateProvider) -> str:
        """The template's address, else Prometheus's fallbacks or the provider's default."""
        traits = providers.METRICS_PROVIDERS.get(provider.type)
        if traits is None:
            raise PermanentError(f"unknown metrics provider {provider.type!r}")
        if provider.address:
            return provider.address
        if traits.uses_metrics_server:
            return canary.metrics_server_for(metric) or self._default_server
        if traits.default_address is None:
            raise PermanentError(f"spec.provider.address: required with provider {provider.type}")
        return traits.default_address

    def _template(self, namespace: str, name: str) -> metric_templates.MetricTemplate:
        self._scope.require_namespace(namespace, "spec.analysis.metrics.templateRef")
        document = _read(
            TEMPLATE,
            namespace,
            name,
            lambda: kubernetes.client.CustomObjectsApi(
                self._kube_api()
            ).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=KUBE_TIMEOUT_SECONDS
            ),
        )
        if document is None:
            raise PermanentError("not found in the cluster")
        template, problems = metric_templates.read_template(document)
        if template is None:
            raise PermanentError("; ".join(problems))
        return template

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        found = _read(
            SECRET,
            namespace,
            name,
            lambda: kubernetes.client.CoreV1Api(self._kube_api()).read_namespaced_secret(
                name, namespace, _request_timeout=KUBE_TIMEOUT_SECONDS
            ),
        )
        if found is None:
            raise PermanentError(f"spec.provider.secretRef: Secret {namespace}/{name} not found")
        data = getattr(found, "data", None) or {}
        credentials = {}
        for key, encoded in data.items():
            try:
                credentials[key] = base64.b64decode(encoded, validate=True).decode().strip()
            except (binascii.Error, ValueError):
                raise PermanentError(
                    f"Secret {namespace}/{name}: key {key!r} is not base64 UTF-8 text"
                ) from None
        return credentials


def _read(
    resource: kube_client.Resource, namespace: str, name: str, read: Callable[[], Any]
) -> Any:
    """The object `read` answers, None when it does not exist; `PermanentError` for what no
    retry fixes (RBAC), `MetricsUnavailableError` when the API does not answer."""
    where = f"{resource.kind} {namespace}/{name}"
    try:
        with kube_client.api_errors("get", resource, namespace, name):
            return kube_client.read_optional(read)
    except kubernetes.client.ApiException as error:
        raise MetricsUnavailableError(
            f"cannot read {where} from the Kubernetes API: status {error.status}"
        ) from error
    except (urllib3.exceptions.HTTPError, OSError, kubernetes.config.ConfigException) as error:
        reason = str(error) or type(error).__name__
        raise MetricsUnavailableError(
            f"cannot read {where} from the Kubernetes API: {reason}"
        ) from error
