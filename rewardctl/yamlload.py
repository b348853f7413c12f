"""Safe YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` forgets line numbers, silently keeps the last of duplicated keys and
expands alias bombs. This loader composes the node tree with the safe loader, then builds plain
Python data itself so it can record the line of every key, refuse duplicate keys, and bound
the size and depth of what aliases expand to.
"""

from __future__ import annotations

from typing import Any

import yaml

from rewardctl.errors import InputError, one_line

Path = tuple[Any, ...]

MAX_NODES = 200_000  # values after alias expansion; a real spec has a few thousand
MAX_DEPTH = 64
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"}


class LocatedData:
    """Data loaded from YAML with a map from each value's path to its 1-based line."""

    def __init__(self, data: Any, lines: dict[Path, int], path: str):
        self.data = data
        self.lines = lines
        self.path = path

    def line_of(self, loc: Path) -> int | None:
        """Line of the deepest known prefix of ``loc`` (a key that is missing maps to its parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def load_yaml(text: str, path: str) -> LocatedData:
    try:
        loader = yaml.SafeLoader(text)  # checks every character first
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise InputError(f"invalid YAML: character {exc.character!r} is not allowed", path=path, line=line) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise InputError(f"invalid YAML: {one_line(problem)}", path=path, line=line) from None
        except yaml.YAMLError as exc:
            raise InputError(f"invalid YAML: {one_line(exc)}", path=path) from None
        except RecursionError:  # PyYAML composes recursively: thousands of nested levels overflow it
            line = loader.get_mark().line + 1
            raise InputError(f"YAML nests deeper than {MAX_DEPTH} levels", path=path, line=line) from None
        if root is None:
            raise InputError("the file is empty", path=path)
        builder = _Builder(loader, path)
        data = builder.build(root, (), 0)
        return LocatedData(data, builder.lines, path)
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, path: str):
        self.loader = loader
        self.path = path
        self.lines: dict[Path, int] = {}
        self.count = 0

    def _fail(self, message: str, node: yaml.Node) -> InputError:
        return InputError(message, path=self.path, line=node.start_mark.line + 1)

    def build(self, node: yaml.Node, loc: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(f"YAML expands to more than {MAX_NODES} values (an alias bomb?)", node)
        if depth > MAX_DEPTH:
            raise self._fail(f"YAML nests deeper than {MAX_DEPTH} levels", node)
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise self._fail(f"unsupported YAML tag {node.tag}", node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves '<<' merge keys
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._fail("mapping keys must be plain scalars", key_node)
                key = self._scalar(key_node)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise self._fail(f"unsupported mapping key {key!r}", key_node)
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    raise self._fail(f"duplicate key '{key}'", key_node)
                self.lines[loc + (key,)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, loc + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # the line is already in the message's location
            raise self._fail(f"invalid value: {one_line(exc.problem or exc.context or exc)}", node) from None
        except yaml.YAMLError as exc:
            raise self._fail(f"invalid value: {one_line(exc)}", node) from None
