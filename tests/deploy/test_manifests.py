"""The manifests in deploy/: well-formed objects, and RBAC exactly as wide as the code needs.

The ClusterRole is checked against the Kubernetes API calls found in the source of the code
that runs in the worker pod (`activities/`, `worker/`). The scanner reads that code with `ast`:

- A Kubernetes call is any attribute named like a public method of a `kubernetes.client.*Api`
  class (`read_namespaced_deployment`, `patch_namespaced_custom_object`, ...).
- Its verb comes from the method name: read/get -> get, list -> list, create -> create,
  patch -> patch, replace -> update, delete -> delete, delete_collection -> deletecollection.
- Its API group and resource come from the request path the client itself sends for that
  method (`/apis/apps/v1/namespaces/{namespace}/deployments/{name}`), so subresources such as
  `deployments/scale` come out as RBAC names them.
- For `CustomObjectsApi` the `group` and `plural` arguments must be string constants of the
  module; a plural that is not (`kind.plural`) stands for every `kube_client.Resource(kind,
  "plural.group")` the module declares in that group.

Anything the scanner cannot map (an unknown verb, an ambiguous receiver, a method passed around
uncalled, `call_api`, the dynamic client, watches) fails the test with its file and line, so a
new kind of API call cannot slip past the RBAC review.
"""

import ast
import functools
import inspect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCANNED_PACKAGES = ("activities", "worker")
"""The code that runs in the worker pod, under the ServiceAccount."""

NAMESPACE = "coalmine-system"
SERVICE_ACCOUNT = "coalmine"
WORKER_CONFIG = "coalmine-worker-config"
CONFIG_KEYS = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "COALMINE_METRICS_SERVER"}

Permission = tuple[str, str, str]
"""(apiGroup, resource, verb) as an RBAC rule names them; the core group is ""."""

EVENTS_RULE: frozenset[Permission] = frozenset({("", "events", "create"), ("", "events", "patch")})
"""Granted ahead of use, for the planned Kubernetes Events (documented in deploy/rbac.yaml)."""

VERB_PREFIXES = (
    ("delete_collection_", "deletecollection"),
    ("read_", "get"),
    ("get_", "get"),
    ("list_", "list"),
    ("create_", "create"),
    ("patch_", "patch"),
    ("replace_", "update"),
    ("delete_", "delete"),
)
HTTP_METHOD = {
    "get": "GET",
    "list": "GET",
    "create": "POST",
    "patch": "PATCH",
    "update": "PUT",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}
METHOD_VARIANTS = ("_with_http_info", "_without_preload_content")
ESCAPE_HATCHES = ("kubernetes.dynamic", "kubernetes.watch", "kubernetes.stream")
RAW_CALLS = ("call_api", "param_serialize")


class UnmappedCall(Exception):
    """A Kubernetes API use whose RBAC permissions the scanner cannot tell."""


# --- the manifests -------------------------------------------------------------------------


def manifest_paths() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def documents(path: Path) -> list[Any]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def all_objects() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/` applies (the files the kustomization lists)."""
    kustomization = documents(DEPLOY / "kustomization.yaml")[0]
    return [obj for name in kustomization["resources"] for obj in documents(DEPLOY / name)]


def the_one(kind: str) -> dict[str, Any]:
    found = [obj for obj in all_objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/, found {len(found)}"
    return found[0]


def granted(cluster_role: Mapping[str, Any]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in cluster_role.get("rules") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


def worker_container() -> dict[str, Any]:
    containers = the_one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


# --- the scanner -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    where: str
    line: int
    method: str
    verb: str
    permissions: frozenset[Permission]


@functools.cache
def api_classes() -> dict[str, type]:
    # kubernetes.client loads its members lazily: go by its __all__, not vars().
    classes = {name: getattr(kubernetes.client, name) for name in kubernetes.client.__all__}
    return {
        name: value
        for name, value in classes.items()
        if inspect.isclass(value) and name.endswith("Api")
    }


@functools.cache
def api_methods() -> dict[str, tuple[str, ...]]:
    """Every public API method name -> the `*Api` classes that define it."""
    owners: dict[str, list[str]] = {}
    for class_name, cls in api_classes().items():
        for name, value in vars(cls).items():
            if name.startswith("_") or not callable(value) or name.endswith(METHOD_VARIANTS):
                continue
            owners.setdefault(name, []).append(class_name)
    return {name: tuple(classes) for name, classes in owners.items()}


def base_method(name: str) -> str:
    for suffix in METHOD_VARIANTS:
        name = name.removesuffix(suffix)
    return name


@functools.cache
def endpoint(class_name: str, method: str) -> tuple[str, str, tuple[str, ...]]:
    """(HTTP method, resource path, parameter names) of one generated client method."""
    cls = api_classes()[class_name]
    serializer = getattr(cls, f"_{method}_serialize", None)
    source = inspect.getsource(serializer) if serializer is not None else ""
    http = re.search(r"method='(\w+)'", source)
    path = re.search(r"resource_path='([^']+)'", source)
    if http is None or path is None:
        raise UnmappedCall(f"cannot find the request path of {class_name}.{method}")
    parameters = tuple(inspect.signature(getattr(cls, method)).parameters)[1:]
    return http.group(1), path.group(1), parameters


def split_path(path: str) -> tuple[str, str]:
    """(group, resource[/subresource]) of a request path, placeholders left in."""
    if match := re.fullmatch(r"/api/v1/(.*)", path):
        group, rest = "", match.group(1)
    elif match := re.fullmatch(r"/apis/([^/]+)/[^/]+/(.*)", path):
        group, rest = match.group(1), match.group(2)
    else:
        raise UnmappedCall(f"unexpected request path {path}")
    parts = rest.split("/")
    if len(parts) > 2 and parts[:2] == ["namespaces", "{namespace}"]:
        parts = parts[2:]
    if not parts[0]:
        raise UnmappedCall(f"request path {path} names no resource")
    resource = parts[0] if len(parts) < 3 else f"{parts[0]}/{parts[2]}"
    return group, resource


def verb_of(method: str) -> str:
    for prefix, verb in VERB_PREFIXES:
        if method.startswith(prefix):
            return verb
    raise UnmappedCall(f"no RBAC verb for method {method}")


class Module:
    """One source file: its string constants, declared Resources and API client bindings."""

    def __init__(self, path: Path, source: str) -> None:
        self.where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        self.tree = ast.parse(source, filename=str(path))
        self.constants: dict[str, ast.expr] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target = node.target
            else:
                continue
            if isinstance(target, ast.Name) and node.value is not None:
                self.constants[target.id] = node.value
        self.clients: dict[str, set[str]] = {}
        """Variable or attribute name -> the `*Api` classes assigned to it."""
        self.resources: set[tuple[str, str]] = set()
        """(group, plural) of every `Resource(kind, "plural.group")` declared here."""
        for child in ast.walk(self.tree):
            if isinstance(child, ast.Assign) and (cls := self.api_class(child.value)):
                for assigned in child.targets:
                    if name := name_of(assigned):
                        self.clients.setdefault(name, set()).add(cls)
            if isinstance(child, ast.Call) and name_of(child.func) == "Resource":
                qualified = self.string(child.args[1]) if len(child.args) > 1 else None
                if qualified is not None:
                    plural, _, group = qualified.partition(".")
                    self.resources.add((group, plural))

    def string(self, node: ast.expr) -> str | None:
        """The value of a string expression made of literals and module constants."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.string(self.constants[node.id])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.string(node.left), self.string(node.right)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    if value.conversion != -1 or value.format_spec is not None:
                        return None
                    value = value.value
                part = self.string(value)
                if part is None:
                    return None
                parts.append(part)
            return "".join(parts)
        return None

    def api_class(self, node: ast.expr) -> str | None:
        """The `*Api` class when `node` constructs one (`kubernetes.client.AppsV1Api(api)`)."""
        if isinstance(node, ast.Call) and name_of(node.func) in api_classes():
            return name_of(node.func)
        return None

    def receiver_class(self, receiver: ast.expr) -> str | None:
        """The `*Api` class of a call's receiver, when the module tells it unambiguously."""
        if cls := self.api_class(receiver):
            return cls
        classes = self.clients.get(name_of(receiver) or "", set())
        return next(iter(classes)) if len(classes) == 1 else None


def name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def scan_source(path: Path, source: str) -> tuple[list[ApiCall], list[str]]:
    """The Kubernetes API calls in one file, and what could not be mapped."""
    module = Module(path, source)
    calls: list[ApiCall] = []
    problems: list[str] = []
    called = {id(node.func): node for node in ast.walk(module.tree) if isinstance(node, ast.Call)}
    for node in ast.walk(module.tree):
        where = f"{module.where}:{getattr(node, 'lineno', 0)}"
        try:
            check_escape_hatch(node)
            if isinstance(node, ast.Constant) and node.value in api_methods():
                raise UnmappedCall(f"method name {node.value!r} used as a string")
            if not isinstance(node, ast.Attribute) or base_method(node.attr) not in api_methods():
                continue
            call = called.get(id(node))
            if call is None:
                raise UnmappedCall(f"{node.attr} referenced without being called")
            calls.append(map_call(module, where, node, call))
        except UnmappedCall as exc:
            problems.append(f"{where}: {exc}")
    return calls, problems


def check_escape_hatch(node: ast.AST) -> None:
    modules: list[str] = []
    if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    elif isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name):
            modules = [f"{node.value.id}.{node.attr}"]
        if node.attr in RAW_CALLS:
            raise UnmappedCall(f"raw API request {node.attr}()")
    for name in modules:
        if name.startswith(ESCAPE_HATCHES):
            raise UnmappedCall(f"{name} is not covered by the RBAC scanner")


def map_call(module: Module, where: str, attribute: ast.Attribute, call: ast.Call) -> ApiCall:
    method = base_method(attribute.attr)
    verb = verb_of(method)
    receiver = module.receiver_class(attribute.value)
    owners = api_methods()[method]
    if receiver is not None:
        if receiver not in owners:
            raise UnmappedCall(f"{receiver} has no method {method}")
        owners = (receiver,)
    candidates = {owner: permissions(module, owner, method, verb, call) for owner in owners}
    distinct = set(candidates.values())
    if len(distinct) != 1:
        raise UnmappedCall(
            f"{method} means different permissions on {', '.join(sorted(candidates))}; "
            "assign the client to a variable or attribute so its class is known"
        )
    return ApiCall(where, attribute.lineno, method, verb, distinct.pop())


def permissions(
    module: Module, class_name: str, method: str, verb: str, call: ast.Call
) -> frozenset[Permission]:
    http, path, parameters = endpoint(class_name, method)
    if HTTP_METHOD[verb] != http:
        raise UnmappedCall(f"{method} sends {http}, not what verb {verb} means")
    group, resource = split_path(path)
    arguments: dict[str, ast.expr] = {}
    for name, value in zip(parameters, call.args, strict=False):
        if isinstance(value, ast.Starred):
            raise UnmappedCall(f"{method} called with *args")
        arguments[name] = value
    for keyword in call.keywords:
        if keyword.arg is None:
            raise UnmappedCall(f"{method} called with **kwargs")
        arguments[keyword.arg] = keyword.value
    groups = {group}
    if group == "{group}":
        group_value = module.string(arguments["group"]) if "group" in arguments else None
        if group_value is None:
            raise UnmappedCall(f"{method}: the group argument is not a module constant")
        groups = {group_value}
    resources = {resource}
    plural, _, subresource = resource.partition("/")
    if plural == "{plural}":
        plural_value = module.string(arguments["plural"]) if "plural" in arguments else None
        plurals = (
            {plural_value}
            if plural_value is not None
            else {name for owner, name in module.resources if owner in groups}
        )
        if not plurals:
            raise UnmappedCall(
                f"{method}: the plural argument is not a module constant and the module "
                f"declares no Resource in group {', '.join(sorted(groups))}"
            )
        resources = {f"{name}/{subresource}" if subresource else name for name in plurals}
    for name in (*groups, *resources):
        if "{" in name:
            raise UnmappedCall(f"{method}: unresolved placeholder in {path}")
    return frozenset((g, r, verb) for g in groups for r in resources)


def scan(packages: tuple[str, ...] = SCANNED_PACKAGES) -> tuple[list[ApiCall], list[str]]:
    calls: list[ApiCall] = []
    problems: list[str] = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            found, unmapped = scan_source(path, path.read_text())
            calls += found
            problems += unmapped
    return calls, problems


def used_permissions() -> set[Permission]:
    calls, problems = scan()
    assert not problems, "Kubernetes API calls the RBAC scanner cannot map:\n" + "\n".join(problems)
    return {permission for call in calls for permission in call.permissions}


def describe(permissions: set[Permission]) -> str:
    return "\n".join(f"  {g or 'core'} {r} {v}" for g, r, v in sorted(permissions))


# --- tests: the manifests --------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_paths(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_document_is_a_kubernetes_object(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], path
        assert isinstance(doc.get("kind"), str) and doc["kind"], path
        assert isinstance((doc.get("metadata") or {}).get("name"), str), path


def test_kustomization_lists_every_manifest_of_deploy() -> None:
    kustomization = documents(DEPLOY / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    present = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == present


def test_namespaced_objects_live_in_coalmine_system() -> None:
    assert the_one("Namespace")["metadata"]["name"] == NAMESPACE
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in all_objects():
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["metadata"]["name"]
        else:
            assert namespace == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']}"


# --- tests: RBAC -----------------------------------------------------------------------------


def test_no_wildcards_in_any_rbac_rule() -> None:
    for obj in all_objects():
        for rule in obj.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in (rule.get(field) or []), f"{obj['metadata']['name']}: {rule}"
            assert not any("*" in resource for resource in rule.get("resources") or [])
            assert "nonResourceURLs" not in rule


def test_cluster_role_grants_exactly_what_the_code_calls() -> None:
    used = used_permissions()
    grants = granted(the_one("ClusterRole"))
    missing = used - grants
    extra = grants - used - EVENTS_RULE
    report = []
    if missing:
        report.append("the code calls these but deploy/rbac.yaml does not grant them:")
        report.append(describe(missing))
    if extra:
        report.append("deploy/rbac.yaml grants these but no code calls them:")
        report.append(describe(extra))
    assert not report, "\n".join(report)
    assert grants >= EVENTS_RULE, "the documented events rule is gone from deploy/rbac.yaml"


def test_cluster_role_binding_binds_the_service_account() -> None:
    binding = the_one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": the_one("ClusterRole")["metadata"]["name"],
    }
    account = the_one("ServiceAccount")["metadata"]
    assert account == {**account, "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_api_errors_labels_name_the_call_they_wrap() -> None:
    """`api_errors(verb, resource, ...)` words the 403 message "not allowed to <verb>
    <resource>"; it must name the permission the wrapped call needs."""
    calls, _ = scan()
    by_file: dict[str, list[ApiCall]] = {}
    for call in calls:
        by_file.setdefault(call.where.rsplit(":", 1)[0], []).append(call)
    checked = 0
    for where, file_calls in by_file.items():
        module = Module(ROOT / where, (ROOT / where).read_text())
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.With):
                continue
            for label, resource in api_errors_labels(module, node):
                first, last = node.body[0].lineno, node.body[-1].end_lineno or node.lineno
                for call in file_calls:
                    if first <= call.line <= last:
                        checked += 1
                        assert call.verb == label, f"{call.where}: {call.method} under {label!r}"
                        if resource is not None:
                            plural, _, group = resource.partition(".")
                            assert (group, plural, call.verb) in call.permissions, call.where
    assert checked, "found no api_errors block around a Kubernetes call"


def api_errors_labels(module: Module, node: ast.With) -> Iterator[tuple[str, str | None]]:
    for item in node.items:
        call = item.context_expr
        if not (isinstance(call, ast.Call) and name_of(call.func) == "api_errors" and call.args):
            continue
        label = module.string(call.args[0])
        assert label is not None, f"{module.where}:{node.lineno}: api_errors verb not a constant"
        resource = None
        if len(call.args) > 1 and isinstance(call.args[1], ast.Name):
            declared = module.constants.get(call.args[1].id)
            if isinstance(declared, ast.Call) and len(declared.args) > 1:
                resource = module.string(declared.args[1])
        yield label, resource


# --- tests: the worker -----------------------------------------------------------------------


def test_worker_runs_as_the_service_account() -> None:
    deployment = the_one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod.get("automountServiceAccountToken", True) is True
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert deployment["spec"]["replicas"] >= 1
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_worker_container_command_config_and_secret() -> None:
    container = worker_container()
    assert container["image"].startswith("ghcr.io/coalmine/coalmine")
    assert container["command"] == ["coalmine", "worker"]
    assert container["envFrom"] == [{"configMapRef": {"name": WORKER_CONFIG}}]
    env = {item["name"]: item for item in container.get("env") or []}
    assert env["TEMPORAL_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "coalmine-temporal", "key": "api-key", "optional": True}
    }
    config = the_one("ConfigMap")
    assert config["metadata"]["name"] == WORKER_CONFIG
    assert set(config["data"]) >= CONFIG_KEYS
    assert config["data"]["COALMINE_METRICS_SERVER"] == "http://prometheus.istio-system:9090"
    assert "TEMPORAL_API_KEY" not in config["data"], "the API key belongs in a Secret"


def test_worker_container_is_locked_down() -> None:
    container = worker_container()
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context.get("privileged", False) is False
    pod = the_one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


# --- tests: the scanner itself ---------------------------------------------------------------

SAMPLE = """
import kubernetes
from activities import kube_client

GROUP = "networking.istio.io"
ROUTE = kube_client.Resource("VirtualService", f"virtualservices.{GROUP}")
RULE = kube_client.Resource("DestinationRule", f"destinationrules.{GROUP}")


class Sample:
    def __init__(self, api):
        self._apps = kubernetes.client.AppsV1Api(api)
        self._objects = kubernetes.client.CustomObjectsApi(api)

    def run(self, kind):
        self._apps.read_namespaced_deployment("n", "ns")
        self._apps.patch_namespaced_deployment_scale(
            "n", "ns", {}, _content_type="application/merge-patch+json"
        )
        kubernetes.client.CoreV1Api().list_namespaced_service_with_http_info("ns")
        self._objects.create_namespaced_custom_object(GROUP, "v1", "ns", "gateways", {})
        self._objects.replace_namespaced_custom_object(
            group=GROUP, version="v1", namespace="ns", plural=kind.plural, name="n", body={}
        )
"""


def scan_text(text: str) -> tuple[set[Permission], list[str]]:
    calls, problems = scan_source(ROOT / "sample.py", text)
    return {permission for call in calls for permission in call.permissions}, problems


def test_scanner_maps_typed_and_custom_object_calls() -> None:
    assert scan_text(SAMPLE) == (
        {
            ("apps", "deployments", "get"),
            ("apps", "deployments/scale", "patch"),
            ("", "services", "list"),
            ("networking.istio.io", "gateways", "create"),
            ("networking.istio.io", "virtualservices", "update"),
            ("networking.istio.io", "destinationrules", "update"),
        },
        [],
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("api.delete_namespaced_pod('n', 'ns')", "pods delete needs no mapping: must pass"),
        ("watch(self._core.list_namespaced_event)", "referenced without being called"),
        ("getattr(api, 'read_namespaced_pod')('n', 'ns')", "used as a string"),
        ("api.api_client.call_api('GET', '/api/v1/pods')", "raw API request"),
        ("kubernetes.watch.Watch()", "kubernetes.watch"),
        ("self._objects.get_namespaced_custom_object(group, 'v1', 'ns', p, 'n')", "group"),
        ("self._objects.get_namespaced_custom_object('x.io', 'v1', 'ns', p, 'n')", "plural"),
        ("self._events.create_namespaced_event('ns', {})", "different permissions"),
        ("self._apps.read_namespaced_service('n', 'ns')", "has no method"),
    ],
)
def test_scanner_refuses_what_it_cannot_map(line: str, reason: str) -> None:
    text = (
        "import kubernetes\n"
        "def f(api, self, group, p, watch):\n"
        "    self._apps = kubernetes.client.AppsV1Api(api)\n"
        f"    {line}\n"
    )
    permissions, problems = scan_text(text)
    if reason.endswith("must pass"):
        assert permissions == {("", "pods", "delete")}
        assert problems == []
    else:
        assert len(problems) == 1 and reason in problems[0], problems
        assert problems[0].startswith("sample.py:4: ")
