"""YAML files users hand shipscope (smoke checks, analysis templates, SLO specs, CI workflows), read safely and
within bounds: aliases may not expand a document past ``MAX_NODES`` nodes (the "billion laughs" of nested
aliases), and nesting too deep to read is refused, each as an InputError naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from shipscope.errors import InputError

MAX_NODES = 200_000
"""Nodes a document may have with its aliases expanded: far beyond any real CI file or spec."""


class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]
    def construct_document(self, node: yaml.Node) -> Any:
        expanded = _expanded_size(node)
        if expanded > MAX_NODES:
            raise yaml.YAMLError(
                f"the document's aliases expand it to {expanded:,} nodes, over the {MAX_NODES:,} allowed"
            )
        return super().construct_document(node)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes counted as many times as aliases repeat them, without expanding anything (sizes memoized per node)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes[id(child)] for child in children))
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None


def load_yaml_file(path: Path) -> Any:
    """The one document of the file at ``path``."""
    text = _text(path)
    return _guarded(lambda: yaml.load(text, Loader=BoundedLoader), str(path))  # noqa: S506 - a SafeLoader


def load_yaml_file_documents(path: Path) -> list[Any]:
    """Every document of the file at ``path`` (a multi-document stream), empty ones left out."""
    text = _text(path)
    documents: list[Any] = _guarded(  # noqa: S506 - a SafeLoader
        lambda: [document for document in yaml.load_all(text, Loader=BoundedLoader) if document is not None],
        str(path),
    )
    return documents


def _guarded(read: Callable[[], Any], where: str) -> Any:
    try:
        return read()
    except yaml.YAMLError as error:
        raise InputError(f"{where}: not YAML: {error}") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to read") from None
