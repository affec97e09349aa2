"""YAML parsing with bounds, so a hostile spec file costs little time and memory.

A spec is refused, with one line naming the problem, when it is larger than `MAX_BYTES`,
nests deeper than `MAX_DEPTH`, holds more than `MAX_VALUES` values once its aliases are
expanded (a billion-laughs file), has an alias pointing into its own anchor, repeats a key
in one mapping, or holds an integer outside the 64-bit range. The bounds are checked on the
parser's event stream first (no recursion, nothing built), then the documents are built.
"""

from typing import Any

import yaml

from canary.names import shown

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 10_000
MAX_INT = 2**63 - 1
_MAX_INT_TEXT = 100
"""Longer integer text is refused before it is converted (Python refuses 4300+ digits)."""

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(Exception):
    """The text is not acceptable YAML for a spec; the message is one line."""


def load_documents(text: str, source: str) -> list[Any]:
    """The documents of `text` (empty ones left out); YamlError when a bound is broken."""
    size = len(text) if len(text) > MAX_BYTES else len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YamlError(too_large(source, size))
    try:
        _check_events(text, source)
        documents = list(yaml.load_all(text, Loader=_BoundedLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        reason = error.problem or error.context or "malformed"
        raise YamlError(f"{where}: invalid YAML: {_one_line(reason)}") from None
    except yaml.YAMLError as error:
        raise YamlError(f"{source}: invalid YAML: {_one_line(str(error))}") from None
    return [document for document in documents if document is not None]


def too_large(source: str, size: int) -> str:
    return f"{source}: {size} bytes, more than the {MAX_BYTES} bytes (1 MiB) a spec may have"


def _check_events(text: str, source: str) -> None:
    """Depth, expanded size and alias sanity, from the event stream alone."""
    open_sizes: list[int] = []
    """Values counted so far in each collection that is still open, outermost first."""
    open_anchors: list[str | None] = []
    anchor_sizes: dict[str, int] = {}
    total = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        line = f"{source}:{event.start_mark.line + 1}" if event.start_mark else source
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_DEPTH:
                raise YamlError(f"{line}: nested more than {MAX_DEPTH} levels deep")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size = open_sizes.pop()
            anchor = open_anchors.pop()
            if anchor is not None:
                anchor_sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                anchor_sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise YamlError(f"{line}: alias *{event.anchor} refers to its own anchor")
            size = anchor_sizes.get(event.anchor or "", 1)
        else:
            continue
        if open_sizes:
            open_sizes[-1] += size
        else:
            total += size
        if total + sum(open_sizes) > MAX_VALUES:
            raise YamlError(
                f"{line}: more than {MAX_VALUES} values once aliases are expanded"
                if anchor_sizes
                else f"{line}: more than {MAX_VALUES} values"
            )


class _BoundedLoader(_BaseLoader):  # type: ignore[misc]
    """Safe loading that refuses duplicate keys and integers beyond 64 bits."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: construction reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)}", key_node.start_mark
                )
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if len(text) > _MAX_INT_TEXT:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(text)} characters is too large", node.start_mark
            )
        value: int = super().construct_yaml_int(node)
        if abs(value) > MAX_INT:
            raise yaml.constructor.ConstructorError(
                None, None, "integer beyond the 64-bit range", node.start_mark
            )
        return value

    def construct_yaml_binary(self, node: yaml.ScalarNode) -> bytes:
        """Bytes have no JSON form, and a spec travels as JSON (`validate --json`, the
        workflow's input)."""
        raise yaml.constructor.ConstructorError(
            None, None, "binary values (!!binary) have no place in a spec", node.start_mark
        )


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:binary", _BoundedLoader.construct_yaml_binary)


def _one_line(text: str) -> str:
    return " ".join(text.split())
