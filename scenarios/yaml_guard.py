"""YAML for scenario files, safe against what a hostile or broken file can do to a loader.

yaml.safe_load refuses arbitrary objects but not size: nine levels of ten aliases (the "billion
laughs") compose to a few hundred nodes that anything walking them (pydantic, json.dumps) sees
as a billion. Here the document is composed first (linear in the text: an alias is a reference
to a node already built), then checked, and only then constructed:

- at most `max_aliases` aliases (*name), counted while composing, so a file of aliases stops early;
- at most `max_nodes` nodes once every alias is expanded (counted over the graph with each node's
  size memoized: linear, never expanded), and no alias that contains itself;
- no duplicate key in a mapping (safe_load keeps the last one silently), named with both lines.

A few aliases stay allowed: sharing one strategy or market between campaigns with an anchor is
a fair use of YAML; an expansion that multiplies the file a thousandfold is not."""

from __future__ import annotations

from typing import Any

import yaml

from synctwin.kernel.errors import InvalidInput

MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts the aliases it composes and stops past the limit."""

    max_aliases = 0
    source = ""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                mark = self.peek_event().start_mark
                raise InvalidInput(
                    f"more than {self.max_aliases} aliases (SYNCTWIN_MAX_YAML_ALIASES); write the values out instead",
                    source=self.source,
                    line=mark.line + 1,
                )
        return super().compose_node(parent, index)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_keys(node: yaml.MappingNode, source: str) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        ident = (key.tag, key.value)
        if ident in seen:
            raise InvalidInput(
                f"duplicate key {key.value!r} (also on line {seen[ident]})",
                source=source,
                line=line,
                field=str(key.value),
            )
        seen[ident] = line


def check_graph(root: yaml.Node, source: str, *, max_nodes: int) -> int:
    """The node count of `root` with every alias expanded, refused past `max_nodes`; duplicate keys
    and self-containing aliases refused too. Iterative post-order, each node's size computed once."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > max_nodes:
                raise InvalidInput(
                    f"more than {max_nodes:,} values once its aliases are expanded "
                    "(SYNCTWIN_MAX_YAML_NODES): an alias expansion bomb?",
                    source=source,
                    line=node.start_mark.line + 1,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise InvalidInput("an alias that contains itself", source=source, line=node.start_mark.line + 1)
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, source)
        stack.append((node, True))
        for child in reversed(_children(node)):
            if id(child) in on_path:
                raise InvalidInput("an alias that contains itself", source=source, line=child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)]


def load_yaml(text: str, *, source: str, max_aliases: int, max_nodes: int) -> Any:
    """One YAML document, checked (aliases, expanded size, duplicate keys) before it is constructed."""
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
    except yaml.YAMLError as exc:
        raise InvalidInput(f"malformed YAML: {getattr(exc, 'reason', None) or exc}", source=source) from None
    loader.max_aliases, loader.source = max_aliases, source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_graph(node, source, max_nodes=max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InvalidInput(
            f"malformed YAML: {getattr(exc, 'problem', None) or exc}", source=source, line=line
        ) from None
    except RecursionError:
        raise InvalidInput("YAML nested too deeply", source=source) from None
    except InvalidInput:
        raise
    except ValueError as exc:  # a constructor's: int() of a 5000-digit number, a date like 2026-02-30
        raise InvalidInput(f"a value YAML cannot read: {exc}", source=source) from None
    finally:
        loader.dispose()
