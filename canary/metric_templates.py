"""Flagger's `MetricTemplate` (flagger.app/v1beta1), read one way for the loader (a template in
the spec file) and for the worker (a template it reads from the cluster at run time), so both
refuse the same templates with the same words.

Each problem is one line, `spec.field: problem`; the caller puts `MetricTemplate ns/name: ` in
front. A template names its Secret (`spec.provider.secretRef.name`), never holds credentials.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from canary import names, providers
from canary.names import shown

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token)."""


@dataclass(frozen=True)
class TemplateProvider:
    """A MetricTemplate's `spec.provider`."""

    type: str = providers.DEFAULT_METRICS_PROVIDER
    address: str | None = None
    secret_ref: str | None = None
    """The name of the Secret, in the template's namespace, with the credentials."""
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class MetricTemplate:
    query: str
    provider: TemplateProvider


def label(namespace: str, name: str) -> str:
    """`namespace/name`, as messages name a template."""
    return f"{names.plain(namespace)}/{names.plain(name)}"


def read_template(document: Any) -> tuple[MetricTemplate | None, list[str]]:
    """The template a MetricTemplate document describes, or None and its problems."""
    spec = document.get("spec") if isinstance(document, Mapping) else None
    if not isinstance(spec, Mapping):
        return None, ["spec: must be a mapping"]
    problems: list[str] = []
    query = spec.get("query")
    if not isinstance(query, str) or not query.strip():
        problems.append("spec.query is required")
    provider, provider_problems = read_provider(spec.get("provider"))
    problems += provider_problems
    if problems or not isinstance(query, str):
        return None, problems
    return MetricTemplate(query=query, provider=provider), []


def read_provider(value: Any) -> tuple[TemplateProvider, list[str]]:
    """`spec.provider` (absent: Prometheus at the Canary's metrics server)."""
    base = "spec.provider"
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return TemplateProvider(), [f"{base}: must be a mapping"]
    problems: list[str] = []
    kind = value.get("type") or providers.DEFAULT_METRICS_PROVIDER
    type_problem = provider_type_problem(kind)
    if type_problem is not None:
        problems.append(f"{base}.type: {type_problem}")
    address = value.get("address") or None
    if address is not None and not isinstance(address, str):
        problems.append(f"{base}.address: must be a string")
        address = None
    secret_ref, secret_problems = _secret_ref(value.get("secretRef"), f"{base}.secretRef")
    problems += secret_problems
    headers, header_problems = _headers(value.get("headers"), f"{base}.headers")
    problems += header_problems
    insecure = value.get("insecureSkipVerify", False)
    if not isinstance(insecure, bool):
        problems.append(f"{base}.insecureSkipVerify: must be true or false")
        insecure = False
    if type_problem is None:
        problems += [
            f"{base}.{where}: {problem}"
            for where, problem in provider_problems(str(kind), address, secret_ref)
        ]
    provider = TemplateProvider(
        type=str(kind),
        address=address,
        secret_ref=secret_ref,
        headers=headers,
        insecure_skip_verify=insecure,
    )
    return provider, problems


def provider_type_problem(kind: Any, what: str = "provider") -> str | None:
    """Why `kind` names no metrics provider coalmine has, or None."""
    if isinstance(kind, str) and kind in providers.METRICS_PROVIDERS:
        return None
    supported = f"(supported: {', '.join(providers.METRICS_PROVIDERS)})"
    if kind in providers.FLAGGER_ONLY_METRICS_PROVIDERS:
        return f"{what} {shown(kind)} is not supported by coalmine yet {supported}"
    return f"unknown {what} {shown(kind)} {supported}"


def provider_problems(
    kind: str, address: str | None, secret_ref: str | None
) -> list[tuple[str, str]]:
    """What a known provider lacks, as (`address` or `secretRef`, problem)."""
    traits = providers.METRICS_PROVIDERS[kind]
    problems: list[tuple[str, str]] = []
    if address is not None:
        url = urlparse(address)
        if (
            url.scheme not in ("http", "https")
            or not url.hostname
            or names.has_control_characters(address)
        ):
            problems.append(("address", f"must be an http(s) URL (got {shown(address)})"))
    elif traits.default_address is None and not traits.uses_metrics_server:
        problems.append(("address", f"required with provider {shown(kind)}"))
    if secret_ref is None and traits.secret_required:
        problems.append(
            (
                "secretRef",
                f"required with provider {shown(kind)} (a Secret with {traits.secret_keys})",
            )
        )
    return problems


def _secret_ref(value: Any, path: str) -> tuple[str | None, list[str]]:
    if value is None:
        return None, []
    name = value.get("name") if isinstance(value, Mapping) else None
    if not isinstance(name, str):
        return None, [f"{path}.name: is required (the Secret's name)"]
    problem = names.subdomain_problem(name)
    if problem is not None:
        return None, [f"{path}.name: {problem}"]
    return name, []


def _headers(value: Any, path: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Flagger's form, a name and a list of values, or a name and one value."""
    if value is None:
        return {}, []
    if not isinstance(value, Mapping):
        return {}, [f"{path}: must map header names to values"]
    headers: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for name, values in value.items():
        where = f"{path}.{names.plain(str(name))}"
        listed = [values] if isinstance(values, str) else values
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problems.append(f"{where}: not an HTTP header name")
        elif not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
            problems.append(f"{where}: must be a string or a list of strings")
        elif any(names.has_control_characters(item) for item in listed):
            problems.append(f"{where}: must not contain control characters")
        else:
            headers[name] = tuple(listed)
    return headers, problems
