"""What a worker lets its rollouts touch, as set by the worker's options.

Whoever can start a workflow chooses the spec, so a spec alone must not reach beyond what the
worker's operator allows:

- LocalProcess targets and the traefik file router run commands and write files on the
  worker's own machine: they are embedded-platform features, refused unless the worker runs
  with `--allow-local-targets`.
- Their state folders and config files lie under the worker's `--local-root`; a relative path
  in a spec is taken under it.
- Kubernetes objects are touched only in the namespaces of `--namespaces` (all when unset).

The worker hands a `WorkerScope` to the activities' constructors; the provider factory checks
it before it builds a provider. A refusal is a `PermanentError` naming the spec field and the
option.
"""

from dataclasses import dataclass, field
from pathlib import Path

from activities import errors

ALLOW_LOCAL_OPTION = "--allow-local-targets"
ALLOW_LOCAL_ENV = "COALMINE_ALLOW_LOCAL_TARGETS"
LOCAL_ROOT_OPTION = "--local-root"
LOCAL_ROOT_ENV = "COALMINE_LOCAL_ROOT"
DEFAULT_LOCAL_ROOT = ".coalmine"
"""Under the worker's current directory."""
NAMESPACES_OPTION = "--namespaces"
NAMESPACES_ENV = "COALMINE_NAMESPACES"


def default_local_root() -> Path:
    return Path.cwd() / DEFAULT_LOCAL_ROOT


@dataclass(frozen=True)
class WorkerScope:
    allow_local_targets: bool = False
    local_root: Path = field(default_factory=default_local_root)
    namespaces: frozenset[str] | None = None
    """The Kubernetes namespaces rollouts may touch; None: every namespace."""

    def require_local(self, spec_field: str, what: str) -> None:
        """Refuse `what` (a LocalProcess target, the traefik router) unless allowed."""
        if not self.allow_local_targets:
            raise errors.PermanentError(
                f"{spec_field}: this worker does not run {what}, which run commands and write "
                f"files on the worker's machine; start the worker with {ALLOW_LOCAL_OPTION} "
                f"({ALLOW_LOCAL_ENV}=1) to allow them"
            )

    def local_path(self, path: Path | str, spec_field: str) -> Path:
        """`path` (relative: under the root) with symlinks and `..` resolved; refused when
        that lies outside the root."""
        root = self.local_root.resolve()
        resolved = (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise errors.PermanentError(
                f"{spec_field}: {path} lies outside {root}, the folder this worker keeps local "
                f"targets' state and config in ({LOCAL_ROOT_OPTION}, {LOCAL_ROOT_ENV})"
            )
        return resolved

    def require_namespace(self, namespace: str, spec_field: str = "metadata.namespace") -> None:
        """Refuse a Kubernetes namespace outside `namespaces`."""
        if self.namespaces is not None and namespace not in self.namespaces:
            allowed = ",".join(sorted(self.namespaces)) or "none"
            raise errors.PermanentError(
                f"{spec_field}: this worker may not touch Kubernetes namespace "
                f"{namespace!r}; it is limited to {allowed} ({NAMESPACES_OPTION}, "
                f"{NAMESPACES_ENV})"
            )
