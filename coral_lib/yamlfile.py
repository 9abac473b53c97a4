"""Read a YAML file into data, turning every way that can fail into one clear error.

Every loader (agent config, colony settings, RBAC policy, webhook settings) reads through
here, so a missing file, bytes that are not UTF-8, broken YAML or nesting deep enough to
exhaust the parser all give a message naming the file, never a traceback.

Hostile documents are refused, not obeyed: a key given twice in one mapping (YAML says
keys are unique; PyYAML silently keeps the last one) is an error naming the key and both
lines, and a document whose aliases expand to more than MAX_EXPANDED_NODES nodes
("billion laughs": a few lines that expand to 10^9 strings once a validator walks them)
or that refers to itself is refused before anything walks it.
"""

from __future__ import annotations

import os
import pathlib

import yaml
from yaml import nodes

MAX_EXPANDED_NODES = 200_000  # far above any real config; a billion-laughs file is 10^9


class YamlFileError(ValueError):
    """`problem` says what is wrong and what is expected; str() adds the file."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


def read_text(path: str | os.PathLike[str], *, source: str) -> str:
    try:
        raw = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise YamlFileError(source, "file not found; pass an existing YAML file") from None
    except IsADirectoryError:
        raise YamlFileError(source, "is a directory; expected a YAML file") from None
    except OSError as exc:
        raise YamlFileError(source, f"cannot read file: {exc.strerror or exc}; "
                                    "expected a readable YAML file") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(source, f"not UTF-8 text (bad byte at offset {exc.start}); "
                                    "expected a YAML file") from None


def _children(node: nodes.Node) -> list[nodes.Node]:
    if isinstance(node, nodes.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, nodes.SequenceNode):
        return list(node.value)
    return []


def _line(node: nodes.Node) -> int:
    return node.start_mark.line + 1


def _check_unique_keys(node: nodes.MappingNode, source: str) -> None:
    seen: dict[tuple[str, str], nodes.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, nodes.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise YamlFileError(source, f"duplicate key {key.value!r} at line {_line(key)} "
                                        f"(first given at line {_line(first)}); "
                                        "each key may appear once in a mapping")


def check_nodes(root: nodes.Node, *, source: str) -> None:
    """Refuse duplicate keys, self-referencing aliases and alias bombs in a composed
    document. Sizes are counted with aliases expanded but each node visited once."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[nodes.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if not children_done:
            if key in sizes:
                continue
            if key in in_progress:
                raise YamlFileError(source, f"the alias at line {_line(node)} refers to a node "
                                            "that contains it; recursive documents are "
                                            "not accepted")
            in_progress.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
            continue
        if isinstance(node, nodes.MappingNode):
            _check_unique_keys(node, source)
        for child in _children(node):
            if id(child) not in sizes:  # still in progress: an alias back to an ancestor
                raise YamlFileError(source, f"the alias at line {_line(child)} refers to a "
                                            "node that contains it; recursive documents "
                                            "are not accepted")
        sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
        in_progress.discard(key)
        if sizes[key] > MAX_EXPANDED_NODES:
            raise YamlFileError(source, f"aliases near line {_line(node)} expand to more than "
                                        f"{MAX_EXPANDED_NODES} nodes; expected a config "
                                        "file, not an alias bomb")


def _safe_load(text: str, source: str) -> object:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_nodes(root, source=source)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def parse(text: str, *, source: str) -> object:
    try:
        return _safe_load(text, source)
    except YamlFileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise YamlFileError(source, f"invalid YAML{where}: {problem}; "
                                    "expected a YAML mapping of keys") from None
    except yaml.reader.ReaderError as exc:
        raise YamlFileError(source, f"invalid YAML: unacceptable character "
                                    f"#x{exc.character:04x} at position {exc.position}; "
                                    "expected printable UTF-8 text") from None
    except RecursionError:
        raise YamlFileError(source, "invalid YAML: nested too deeply to read; "
                                    "expected a YAML mapping") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise YamlFileError(source, f"invalid YAML: {exc}; expected a YAML mapping") from None


def load(path: str | os.PathLike[str], *, source: str | None = None) -> object:
    """The parsed document of the file at path (None for an empty file)."""
    name = source or os.fspath(path)
    return parse(read_text(path, source=name), source=name)
