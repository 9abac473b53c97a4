"""Read a YAML file into data, turning every way that can fail into one clear error.

Every loader (agent config, colony settings, RBAC policy, webhook settings) reads through
here, so a missing file, bytes that are not UTF-8, broken YAML or nesting deep enough to
exhaust the parser all give a message naming the file, never a traceback.
"""

from __future__ import annotations

import os
import pathlib

import yaml


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


def parse(text: str, *, source: str) -> object:
    try:
        return yaml.safe_load(text)
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
