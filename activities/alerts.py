"""Alert providers: Slack, Microsoft Teams, Discord and a generic JSON webhook.

A Canary names its providers (`analysis.alerts[].providerRef.name`); what a name means (type
and URL) is configured on the worker, never in the spec, so no webhook URL lands in a rollout's
history. A name resolves from, in order:

1. environment variables `COALMINE_ALERT_<NAME>_TYPE` and `COALMINE_ALERT_<NAME>_URL`
   (optional `_CHANNEL`, `_USERNAME`), NAME upper-cased with `-` and `.` turned into `_`;
2. the YAML file named by `COALMINE_ALERT_PROVIDERS`: a list of
   `{name, type, address | secretRef: {name, namespace?, key?}, channel?, username?}`; a
   secretRef is read from a Kubernetes Secret (namespace defaults to the providerRef's, then
   the Canary's; key defaults to `address`, as in Flagger's AlertProvider).

Notifications are best effort: a failed delivery is an outcome with a one-line reason, never
an exception, and no message ever contains a provider's URL (it is the secret).
"""

import asyncio
import base64
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pydantic
import urllib3
import yaml
from pydantic.alias_generators import to_camel

from activities import errors, kube_client
from activities.webhooks import call_webhook
from canary.contract import Notification, NotificationKind
from canary.spec import Alert, Canary, ProviderRef, Severity

ALERT_TIMEOUT_SECONDS = 5.0
"""Bound on each POST to a provider, connection included."""
KUBE_TIMEOUT_SECONDS = 5.0
ENV_PREFIX = "COALMINE_ALERT_"
PROVIDERS_FILE_VARIABLE = "COALMINE_ALERT_PROVIDERS"
DEFAULT_SECRET_KEY = "address"
SECRET = kube_client.Resource("Secret", "secrets")

SecretReader = Callable[[str, str, str], str]
"""`(namespace, name, key) -> value` of one key of a Kubernetes Secret; raises `AlertError`."""


class AlertError(Exception):
    """An alert that cannot be sent as configured: unknown provider or type, unreadable secret."""


class ProviderType(StrEnum):
    SLACK = "slack"
    MSTEAMS = "msteams"
    DISCORD = "discord"
    GENERIC = "generic"


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.ERROR: 2}


def admits(alert: Severity, notification: Severity) -> bool:
    """Flagger's filter: `info` gets everything, `warn` warnings and errors, `error` errors."""
    return _SEVERITY_RANK[notification] >= _SEVERITY_RANK[alert]


# --- payloads ---------------------------------------------------------------------------------

_SLACK_COLOR = {Severity.INFO: "good", Severity.WARN: "warning", Severity.ERROR: "danger"}
_TEAMS_COLOR = {Severity.INFO: "Good", Severity.WARN: "Warning", Severity.ERROR: "Attention"}
_DISCORD_COLOR = {Severity.INFO: 0x2EB886, Severity.WARN: 0xDAA038, Severity.ERROR: 0xA30200}
_DISCORD_CONTENT_LIMIT = 2000
_DISCORD_TITLE_LIMIT = 256


def _utc(time: datetime) -> datetime:
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


def _iso(time: datetime) -> str:
    return _utc(time).isoformat().replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def slack_payload(
    target: str,
    notification: Notification,
    channel: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (also the notification text) and one
    attachment coloured by severity with the fields Target, Event and Severity."""
    payload: dict[str, Any] = {
        "text": notification.message,
        "attachments": [
            {
                "color": _SLACK_COLOR[notification.severity],
                "fallback": notification.message,
                "author_name": target,
                "fields": [
                    {"title": "Target", "value": target, "short": True},
                    {"title": "Event", "value": notification.kind.value, "short": True},
                    {"title": "Severity", "value": notification.severity.value, "short": True},
                ],
                "footer": "coalmine",
                "ts": int(_utc(notification.time).timestamp()),
            }
        ],
    }
    if channel:
        payload["channel"] = channel
    if username:
        payload["username"] = username
    return payload


def teams_payload(target: str, notification: Notification) -> dict[str, Any]:
    """An Adaptive Card in the message envelope that Teams incoming webhooks (Workflows and
    the older connectors) accept: the message, then a FactSet with target, event, severity."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "text": notification.message,
                "wrap": True,
                "weight": "Bolder",
                "size": "Medium",
                "color": _TEAMS_COLOR[notification.severity],
            },
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Target", "value": target},
                    {"title": "Event", "value": notification.kind.value},
                    {"title": "Severity", "value": notification.severity.value},
                    {"title": "Time", "value": _iso(notification.time)},
                ],
            },
        ],
    }
    return {
        "type": "message",
        "summary": notification.message,
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def discord_payload(
    target: str, notification: Notification, username: str | None = None
) -> dict[str, Any]:
    """A native Discord execute-webhook body: `content` and one embed coloured by severity.
    Mentions in the message are never parsed (no accidental @everyone)."""
    payload: dict[str, Any] = {
        "content": _clip(notification.message, _DISCORD_CONTENT_LIMIT),
        "embeds": [
            {
                "title": _clip(target, _DISCORD_TITLE_LIMIT),
                "color": _DISCORD_COLOR[notification.severity],
                "fields": [
                    {"name": "Event", "value": notification.kind.value, "inline": True},
                    {"name": "Severity", "value": notification.severity.value, "inline": True},
                ],
                "timestamp": _iso(notification.time),
                "footer": {"text": "coalmine"},
            }
        ],
        "allowed_mentions": {"parse": []},
    }
    if username:
        payload["username"] = username
    return payload


def generic_payload(target: str, notification: Notification) -> dict[str, Any]:
    """coalmine's own JSON: `{target, kind, severity, message, time}` (time in ISO 8601, UTC)."""
    return {
        "target": target,
        "kind": notification.kind.value,
        "severity": notification.severity.value,
        "message": notification.message,
        "time": _iso(notification.time),
    }


# --- providers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    ok: bool
    message: str
    reachable: bool
    """False when the provider did not answer at all (timeout, connection refused)."""


@dataclass(frozen=True)
class AlertProvider:
    """One configured destination. `url` is a secret: it is left out of the repr."""

    name: str
    type: ProviderType
    url: str = field(repr=False)
    channel: str | None = None
    username: str | None = None

    def payload(self, target: str, notification: Notification) -> dict[str, Any]:
        match self.type:
            case ProviderType.SLACK:
                return slack_payload(target, notification, self.channel, self.username)
            case ProviderType.MSTEAMS:
                return teams_payload(target, notification)
            case ProviderType.DISCORD:
                return discord_payload(target, notification, self.username)
            case ProviderType.GENERIC:
                return generic_payload(target, notification)

    async def send(
        self,
        target: str,
        notification: Notification,
        timeout_seconds: float = ALERT_TIMEOUT_SECONDS,
    ) -> SendOutcome:
        """POST one notification; any 2xx passes. Never raises for a network or HTTP failure.

        The answer is read within `timeout_seconds` and up to `webhooks.MAX_RESPONSE_BYTES`.
        Its message never quotes the URL (an error page or a client error might)."""
        outcome = await call_webhook(self.url, self.payload(target, notification), timeout_seconds)
        reachable = outcome.status_code is not None
        return SendOutcome(outcome.ok, errors.redact_url(outcome.message, self.url), reachable)


# --- resolution -------------------------------------------------------------------------------


class _Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)


class SecretRef(_Config):
    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None
    key: str = DEFAULT_SECRET_KEY


class ProviderEntry(_Config):
    """One entry of the providers file."""

    name: str = pydantic.Field(min_length=1)
    type: str
    address: str | None = None
    secret_ref: SecretRef | None = None
    channel: str | None = None
    username: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_address(self) -> "ProviderEntry":
        if (self.address is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of address and secretRef")
        return self


def env_name(provider: str) -> str:
    """The NAME in `COALMINE_ALERT_<NAME>_URL` for a provider name."""
    return provider.upper().replace("-", "_").replace(".", "_")


def load_providers_file(path: str | os.PathLike[str]) -> dict[str, ProviderEntry]:
    """Parse and check the providers file; `AlertError` names the file and the bad entry."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise AlertError(f"cannot read alert providers file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise AlertError(f"alert providers file {path} is not valid YAML: {error}") from error
    if document is None:
        return {}
    if not isinstance(document, list):
        raise AlertError(f"alert providers file {path}: expected a list of providers")
    entries: dict[str, ProviderEntry] = {}
    for index, item in enumerate(document):
        label = f"alert providers file {path}, entry {index + 1}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label += f" ({item['name']})"
        try:
            entry = ProviderEntry.model_validate(item)
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'entry'}: {problem['msg']}"
                for problem in error.errors()
            )
            raise AlertError(f"{label}: {problems}") from error
        try:
            _provider_type(entry.type, entry.name)
        except AlertError as error:
            raise AlertError(f"{label}: {error}") from None
        if entry.name in entries:
            raise AlertError(f"{label}: provider {entry.name!r} is defined twice")
        entries[entry.name] = entry
    return entries


def _provider_type(value: str, provider: str) -> ProviderType:
    try:
        return ProviderType(value.strip().lower())
    except ValueError:
        known = ", ".join(kind.value for kind in ProviderType)
        raise AlertError(
            f"alert provider {provider!r}: unknown type {value!r} (known: {known})"
        ) from None


def _checked_url(url: str, provider: str) -> str:
    url = url.strip()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise AlertError(f"alert provider {provider!r}: the address is not an http(s) URL")
    return url


class AlertProviders:
    """The worker's provider registry: resolves a Canary's providerRef to an `AlertProvider`."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        entries: Mapping[str, ProviderEntry] | None = None,
        secret_reader: SecretReader | None = None,
    ) -> None:
        self._environ = dict(environ or {})
        self._entries = dict(entries or {})
        self._secret_reader = secret_reader

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] = os.environ,
        secret_reader: SecretReader | None = None,
    ) -> "AlertProviders":
        """Snapshot the `COALMINE_ALERT_*` variables and load the providers file they name;
        a broken file raises `AlertError` here, at worker start."""
        variables = {key: value for key, value in environ.items() if key.startswith(ENV_PREFIX)}
        path = variables.get(PROVIDERS_FILE_VARIABLE, "").strip()
        entries = load_providers_file(path) if path else {}
        return cls(variables, entries, secret_reader)

    def resolve(self, ref: ProviderRef, default_namespace: str) -> AlertProvider:
        """The provider `ref` names; `AlertError` when it is unknown or cannot be read.

        Blocking when it reads a Secret: call it off the event loop."""
        from_env = self._from_environment(ref.name)
        if from_env is not None:
            return from_env
        entry = self._entries.get(ref.name)
        if entry is None:
            raise AlertError(
                f"unknown alert provider {ref.name!r}: set {ENV_PREFIX}{env_name(ref.name)}_TYPE "
                f"and {ENV_PREFIX}{env_name(ref.name)}_URL, or add it to the file named by "
                f"{PROVIDERS_FILE_VARIABLE}"
            )
        kind = _provider_type(entry.type, entry.name)
        if entry.address is not None:
            url = entry.address
        else:
            assert entry.secret_ref is not None
            url = self._read_secret(entry, entry.secret_ref, ref.namespace or default_namespace)
        return AlertProvider(
            name=entry.name,
            type=kind,
            url=_checked_url(url, entry.name),
            channel=entry.channel,
            username=entry.username,
        )

    def _from_environment(self, name: str) -> AlertProvider | None:
        prefix = f"{ENV_PREFIX}{env_name(name)}_"
        kind, url = self._environ.get(prefix + "TYPE"), self._environ.get(prefix + "URL")
        if kind is None and url is None:
            return None
        if kind is None or url is None:
            missing = prefix + ("TYPE" if kind is None else "URL")
            raise AlertError(f"alert provider {name!r}: {missing} is not set")
        return AlertProvider(
            name=name,
            type=_provider_type(kind, name),
            url=_checked_url(url, name),
            channel=self._environ.get(prefix + "CHANNEL") or None,
            username=self._environ.get(prefix + "USERNAME") or None,
        )

    def _read_secret(self, entry: ProviderEntry, ref: SecretRef, namespace: str) -> str:
        namespace = ref.namespace or namespace
        if self._secret_reader is None:
            raise AlertError(
                f"alert provider {entry.name!r}: its address is in Secret {namespace}/{ref.name} "
                "but this worker has no Kubernetes client"
            )
        return self._secret_reader(namespace, ref.name, ref.key)


class KubernetesSecretReader:
    """Reads one key of a Secret (core/v1 secrets get); the client is made on first use."""

    def __init__(self, api: Callable[[], kubernetes.client.ApiClient]) -> None:
        self._api_factory = api
        self._core: kubernetes.client.CoreV1Api | None = None
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str, key: str) -> str:
        where = f"Secret {namespace}/{name}"
        try:
            with self._lock:
                if self._core is None:
                    self._core = kubernetes.client.CoreV1Api(self._api_factory())
                core = self._core
            with kube_client.api_errors("get", SECRET, namespace, name):
                secret = core.read_namespaced_secret(
                    name, namespace, _request_timeout=KUBE_TIMEOUT_SECONDS
                )
        except errors.PermanentError as error:
            raise AlertError(f"cannot read {where}: {error}") from error
        except kubernetes.client.ApiException as error:
            raise AlertError(f"cannot read {where}: status {error.status}") from error
        except (urllib3.exceptions.HTTPError, OSError, kubernetes.config.ConfigException) as error:
            reason = str(error) or type(error).__name__
            raise AlertError(f"cannot read {where}: {reason}") from error
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            raise AlertError(f"{where} has no key {key!r}")
        try:
            return base64.b64decode(encoded, validate=True).decode().strip()
        except (ValueError, UnicodeDecodeError) as error:
            raise AlertError(f"{where}: key {key!r} is not base64 UTF-8 text") from error


# --- delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertDelivery:
    """What became of one notification for one alert (or of a whole alert that did not
    resolve, then `kind` is None)."""

    alert: str
    provider: str
    kind: NotificationKind | None
    ok: bool
    detail: str

    def describe(self) -> str:
        what = f"{self.kind.value} " if self.kind is not None else ""
        verdict = "sent" if self.ok else "not sent"
        return f"alert {self.alert} (provider {self.provider}): {what}{verdict}: {self.detail}"


async def send_alerts(
    providers: AlertProviders,
    canary: Canary,
    notifications: Sequence[Notification],
    timeout_seconds: float = ALERT_TIMEOUT_SECONDS,
) -> list[AlertDelivery]:
    """Send each notification to every alert of the spec whose severity admits it.

    Alerts go out concurrently; each alert gets its notifications in order. Once a provider
    fails to answer at all, the rest of this batch is skipped for it, so one dead endpoint
    costs one timeout, not one per notification."""
    batches = [
        _send_alert(providers, canary, alert, admitted, timeout_seconds)
        for alert in canary.spec.analysis.alerts
        if (admitted := [note for note in notifications if admits(alert.severity, note.severity)])
    ]
    results = await asyncio.gather(*batches)
    return [delivery for batch in results for delivery in batch]


async def _send_alert(
    providers: AlertProviders,
    canary: Canary,
    alert: Alert,
    notifications: Iterable[Notification],
    timeout_seconds: float,
) -> list[AlertDelivery]:
    ref = alert.provider_ref
    try:
        provider = await asyncio.to_thread(providers.resolve, ref, canary.metadata.namespace)
    except AlertError as error:
        return [AlertDelivery(alert.name, ref.name, None, False, str(error))]
    deliveries: list[AlertDelivery] = []
    skip_reason: str | None = None
    for notification in notifications:
        if skip_reason is not None:
            deliveries.append(
                AlertDelivery(alert.name, provider.name, notification.kind, False, skip_reason)
            )
            continue
        outcome = await provider.send(canary.target, notification, timeout_seconds)
        deliveries.append(
            AlertDelivery(alert.name, provider.name, notification.kind, outcome.ok, outcome.message)
        )
        if not outcome.reachable:
            skip_reason = f"skipped: the provider did not answer earlier ({outcome.message})"
    return deliveries
