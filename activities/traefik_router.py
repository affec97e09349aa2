"""Traefik router: a file-provider dynamic config (YAML) that splits traffic by weight.

For a rollout whose service is `<svc>` (spec.service.name, else targetRef.name) over target
`<target>` (targetRef.name) the file at `spec.traefik.configFile` holds

- router `<svc>` on `spec.traefik.entryPoint` with `spec.traefik.rule`, to service `<svc>`;
- service `<svc>`: `weighted` over `<target>-primary` and `<target>-canary` (absolute weights; a
  weight of 0 gets no request), or with mirroring routes a `mirroring` service whose main
  service is `<target>-primary`, copying `canary_weight` percent of requests to the canary;
- services `<target>-primary` and `<target>-canary`: one server each,
  http://127.0.0.1:<primaryPort> and http://127.0.0.1:<canaryPort>.

The children are named after the target so the built-in metrics find them: Traefik labels
their metrics `service="<target>-canary@file"`. With `analysis.match` (A/B testing), router
`<svc>` sends everything to the primary and router `<svc>-match` (rule AND the match, so it has
the higher priority) sends matching requests to service `<svc>`.

The file is replaced atomically (a temporary file beside it that Traefik does not load, then a
rename) and only when its content changes. Traefik must watch it (`watch: true`); set its
`providers.providersThrottleDuration` low (e.g. 100ms), as the default 2s delays each reload.
With `spec.traefik.apiUrl`, writing the routes returns once Traefik's API shows service
`<svc>@file` with the new split: a workload that just lost its traffic is then stopped only
after Traefik stopped sending it requests, however long a busy Traefik took to reload.
"""

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from activities import errors, files
from canary import names
from canary.decision import ALL_TO_PRIMARY, Routes
from canary.spec import Canary


class TraefikConfigError(Exception):
    """The dynamic config file cannot be read or written; retrying may help (e.g. a disk or a
    permission fixed), so it is not permanent."""


@dataclass(frozen=True)
class TraefikSettings:
    config_file: Path
    service: str
    """Name of the router and of the service that splits the traffic."""
    target: str
    """Prefix of the two child services, `<target>-primary` and `<target>-canary`."""
    primary_port: int
    canary_port: int
    entry_point: str = "web"
    rule: str = "PathPrefix(`/`)"
    match: tuple[Mapping[str, Any], ...] = ()
    """Istio-style HTTPMatchRequests (headers, queryParams, uri, method) for A/B testing."""
    description: str = ""
    """Who owns the file, written as a comment at its top."""
    api_url: str | None = None
    """Traefik's API, where each split written is confirmed (None: not confirmed)."""
    apply_timeout_seconds: float = 10.0
    """How long Traefik may take to serve a split written, before the call fails (and is
    retried)."""


class TraefikRouter:
    def __init__(self, settings: TraefikSettings) -> None:
        self.settings = settings
        self.primary_service = f"{settings.target}-primary"
        self.canary_service = f"{settings.target}-canary"
        # Fail at once (permanently) on a match Traefik cannot express.
        self._match_rule = match_rule(settings.match) if settings.match else None

    @classmethod
    def for_canary(cls, canary: Canary, workdir: Path | None = None) -> "TraefikRouter":
        """`workdir` anchors a relative `configFile` (default: the current directory)."""
        spec = canary.spec
        if spec.traefik is None:
            raise errors.PermanentError("spec.traefik: required when spec.provider is traefik")
        if spec.local is None:
            raise errors.PermanentError("spec.local: provider traefik routes LocalProcess targets")
        api_url = spec.traefik.api_url
        if api_url is not None and not names.is_http_url(api_url):
            raise errors.PermanentError(
                f"spec.traefik.apiUrl: must be an http(s) URL (got {names.shown(api_url)})"
            )
        target = spec.target_ref.name
        return cls(
            TraefikSettings(
                config_file=(workdir or Path.cwd()) / spec.traefik.config_file,
                service=spec.service.name or target,
                target=target,
                primary_port=spec.local.primary_port,
                canary_port=spec.local.canary_port,
                entry_point=spec.traefik.entry_point,
                rule=spec.traefik.rule,
                match=tuple(spec.analysis.match),
                description=f"canary {canary.metadata.namespace}/{canary.metadata.name}",
                api_url=spec.traefik.api_url,
            )
        )

    def reconcile(self) -> None:
        """Write the config: 100/0 when there is none, else with the weights it has."""
        current = self._read_text()
        routes = (current is not None and self._parse_routes(current)) or ALL_TO_PRIMARY
        self._write(routes, current)
        self._confirm(routes)

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; with `mirror`, all traffic goes to the primary and
        `canary_weight` percent of it is copied to the canary. Same routes, same file."""
        self._write(routes, self._read_text())
        self._confirm(routes)

    def get_routes(self) -> Routes:
        path = self.settings.config_file
        text = self._read_text()
        if text is None:
            problem = "is a folder" if path.is_dir() else "does not exist"
            raise errors.PermanentError(f"traefik config {path} {problem}")
        routes = self._parse_routes(text)
        if routes is None:
            raise errors.PermanentError(
                f"traefik config {path} has no service {self.settings.service!r} splitting "
                f"traffic between {self.primary_service} and {self.canary_service}"
            )
        return routes

    def render(self, routes: Routes) -> str:
        """The whole dynamic config for `routes`, as YAML."""
        name = self.settings.service
        entry_points = [self.settings.entry_point]
        routers: dict[str, Any] = {}
        if self._match_rule is None:
            routers[name] = {
                "entryPoints": entry_points,
                "rule": self.settings.rule,
                "service": name,
            }
        else:
            routers[name] = {
                "entryPoints": entry_points,
                "rule": self.settings.rule,
                "service": self.primary_service,
            }
            routers[f"{name}-match"] = {
                "entryPoints": entry_points,
                "rule": f"({self.settings.rule}) && ({self._match_rule})",
                "service": name,
            }
        config = {
            "http": {
                "routers": routers,
                "services": {
                    name: self._split(routes),
                    self.primary_service: _server(self.settings.primary_port),
                    self.canary_service: _server(self.settings.canary_port),
                },
            }
        }
        header = "# Written by coalmine"
        if self.settings.description:
            header += f" for {self.settings.description}"
        header += "; it is rewritten at every weight change.\n"
        return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)

    def _split(self, routes: Routes) -> dict[str, Any]:
        """The service `<svc>` that splits the traffic by `routes`."""
        if routes.mirror:
            return {
                "mirroring": {
                    "service": self.primary_service,
                    "mirrors": [{"name": self.canary_service, "percent": routes.canary_weight}],
                }
            }
        return {
            "weighted": {
                "services": [
                    {"name": self.primary_service, "weight": routes.primary_weight},
                    {"name": self.canary_service, "weight": routes.canary_weight},
                ]
            }
        }

    def _served(self, routes: Routes, service: Mapping[str, Any]) -> bool:
        """Whether `service`, as Traefik's API shows the split service, splits the traffic as
        the service written for `routes` does (the API shows it in the file's shape)."""
        written = self._split_routes(self._split(routes))
        return written is not None and self._split_routes(service) == written

    def _confirm(self, routes: Routes) -> None:
        """With an API to ask: wait until Traefik serves `routes`, or fail (retryably)."""
        api = self.settings.api_url
        if api is None:
            return
        name = urllib.parse.quote(f"{self.settings.service}@file", safe="@")
        url = f"{api.rstrip('/')}/api/http/services/{name}"
        timeout = self.settings.apply_timeout_seconds
        deadline = time.monotonic() + timeout
        seen = "nothing yet"
        while True:
            remaining = deadline - time.monotonic()
            try:
                service = _get_json(url, max(0.1, min(2.0, remaining)))
            except (OSError, ValueError, http.client.HTTPException) as error:
                seen = f"{url}: {getattr(error, 'reason', None) or error}"
            else:
                if service is not None and self._served(routes, service):
                    return
                seen = f"{url}: " + ("no such service" if service is None else "older weights")
            if remaining <= 0:
                raise TraefikConfigError(
                    f"Traefik has not applied {self.settings.config_file} within {timeout:g}s "
                    f"(last seen: {seen})"
                )
            time.sleep(min(0.05, max(remaining, 0.0)))

    def _parse_routes(self, text: str) -> Routes | None:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
        return self._split_routes(_dig(config, "http", "services", self.settings.service))

    def _split_routes(self, service: Any) -> Routes | None:
        """The routes a split service applies (from the file or from Traefik's API); None when
        it is not one splitting between the primary and the canary."""
        if not isinstance(service, Mapping):
            return None
        mirroring = service.get("mirroring")
        if isinstance(mirroring, Mapping) and mirroring.get("service") == self.primary_service:
            for mirror in mirroring.get("mirrors") or []:
                if isinstance(mirror, Mapping) and mirror.get("name") == self.canary_service:
                    percent = mirror.get("percent", 0)
                    if not isinstance(percent, int):
                        return None
                    return Routes(primary_weight=100, canary_weight=percent, mirror=True)
            return None
        weighted = _dig(service, "weighted", "services")
        if not isinstance(weighted, list):
            return None
        try:
            weights = {
                item.get("name"): int(item.get("weight", 1))
                for item in weighted
                if isinstance(item, Mapping)
            }
        except (TypeError, ValueError):
            return None
        if self.canary_service not in weights:
            return None
        return Routes(
            primary_weight=weights.get(self.primary_service, 0),
            canary_weight=weights[self.canary_service],
        )

    def _read_text(self) -> str | None:
        path = self.settings.config_file
        try:
            return path.read_text()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            # Not a file there: writing will say why, when it cannot.
            return None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise TraefikConfigError(f"Traefik config unreadable: {path}: {reason}") from error

    def _write(self, routes: Routes, current: str | None) -> None:
        text = self.render(routes)
        if text == current:
            return
        path = self.settings.config_file
        try:
            files.write_atomically(path, text)
        except OSError as error:
            reason = error.strerror or str(error)
            raise TraefikConfigError(f"Traefik config unwritable: {path}: {reason}") from error


MAX_API_ANSWER = 1024 * 1024
"""Bytes of an API answer read at most: one service is a few hundred."""


def _get_json(url: str, timeout: float) -> Mapping[str, Any] | None:
    """The JSON object at `url`; None when the server answers 404 (not loaded yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(MAX_API_ANSWER + 1)
    except urllib.error.HTTPError as error:
        with error:  # its body is not read
            if error.code == 404:
                return None
            raise
    if len(body) > MAX_API_ANSWER:
        raise ValueError(f"answer larger than {MAX_API_ANSWER} bytes")
    found = json.loads(body)
    if not isinstance(found, Mapping):
        raise ValueError("answer is not a JSON object")
    return found


def _server(port: int) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# -- A/B testing matches ----------------------------------------------------------------------

_MATCHERS = {
    # field -> (exact matcher, regexp matcher) taking (name, value)
    "headers": ("Header", "HeaderRegexp"),
    "queryParams": ("Query", "QueryRegexp"),
}


def match_rule(matches: Sequence[Mapping[str, Any]]) -> str:
    """A Traefik rule for Istio-style HTTPMatchRequests: the list is OR, fields in one are AND.

    Supported: `headers` and `queryParams` (exact, prefix, suffix, regex), `uri` (exact,
    prefix, regex) and `method` (exact); anything else is refused."""
    alternatives = []
    for index, match in enumerate(matches):
        path = f"spec.analysis.match[{index}]"
        if not isinstance(match, Mapping) or not match:
            raise errors.PermanentError(f"{path}: must be a non-empty mapping")
        parts: list[str] = []
        for field, conditions in match.items():
            if field in _MATCHERS:
                exact, regexp = _MATCHERS[field]
                if not isinstance(conditions, Mapping):
                    raise errors.PermanentError(f"{path}.{field}: must map names to conditions")
                for name, condition in conditions.items():
                    kind, value = _condition(condition, f"{path}.{field}.{name}")
                    if kind == "exact":
                        parts.append(f"{exact}({_quote(name)}, {_quote(value)})")
                    else:
                        parts.append(f"{regexp}({_quote(name)}, {_quote(_regexp(kind, value))})")
            elif field == "uri":
                kind, value = _condition(conditions, f"{path}.uri")
                if kind == "exact":
                    parts.append(f"Path({_quote(value)})")
                elif kind == "prefix":
                    parts.append(f"PathPrefix({_quote(value)})")
                elif kind == "regex":
                    parts.append(f"PathRegexp({_quote(value)})")
                else:
                    raise errors.PermanentError(f"{path}.uri: traefik cannot match a uri {kind}")
            elif field == "method":
                kind, value = _condition(conditions, f"{path}.method")
                if kind != "exact":
                    raise errors.PermanentError(f"{path}.method: traefik matches methods exactly")
                parts.append(f"Method({_quote(value)})")
            else:
                raise errors.PermanentError(
                    f"{path}.{field}: provider traefik matches headers, queryParams, uri and "
                    "method only"
                )
        alternatives.append(" && ".join(parts))
    if len(alternatives) == 1:
        return alternatives[0]
    return " || ".join(f"({alternative})" for alternative in alternatives)


def _condition(condition: Any, path: str) -> tuple[str, str]:
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise errors.PermanentError(f"{path}: must have one of exact, prefix, suffix, regex")
    ((kind, value),) = condition.items()
    if kind not in ("exact", "prefix", "suffix", "regex") or not isinstance(value, str):
        raise errors.PermanentError(f"{path}: must have one of exact, prefix, suffix, regex")
    return kind, value


def _regexp(kind: str, value: str) -> str:
    if kind == "prefix":
        return f"^{re.escape(value)}"
    if kind == "suffix":
        return f"{re.escape(value)}$"
    return value


def _quote(value: str) -> str:
    if "`" in value:
        raise errors.PermanentError(f"a traefik rule cannot hold a backtick: {value!r}")
    return f"`{value}`"
