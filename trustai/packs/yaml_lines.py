"""YAML read with the line of every key, so that a validation error in a hand-written file (a policy
pack, ``system.yaml``) names ``file:line`` and the dotted key."""

from typing import Any

import yaml

from trustai.errors import TrustaiUserError

MAX_DEPTH = 32

KeyPath = tuple[str | int, ...]


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases as it composes: a few kilobytes of aliases can
    stand for gigabytes once the data is copied or dumped, and hand-written packs do not need them."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            sigil = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise TrustaiUserError(
                "YAML anchors and aliases are not allowed in a pack or system.yaml "
                f"(found {sigil}{event.anchor})",
                where=f"{self.name}:{event.start_mark.line + 1}",
                fix="write the values out",
            )
        return super().compose_node(parent, index)


def read_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """Parse YAML ``text`` into its node tree (for ``line_map``) and its data (None for an empty text).

    Raises TrustaiUserError at ``source:line`` for invalid YAML and for any anchor or alias, and at
    ``source`` for YAML nested past the parser's recursion limit.
    """
    loader: _NoAliasLoader | None = None
    try:
        loader = _NoAliasLoader(text)  # reads, and checks the characters of, the start of the text
        loader.name = source
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise TrustaiUserError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    except RecursionError:
        raise TrustaiUserError("YAML nested too deeply", where=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def line_map(node: yaml.Node) -> dict[KeyPath, int]:
    """Map each key path (tuple of keys / list indexes) to its 1-based line in the YAML text.

    Raises TrustaiUserError when the document nests deeper than ``MAX_DEPTH``.
    """
    lines: dict[KeyPath, int] = {}

    def walk(n: yaml.Node, path: KeyPath, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise TrustaiUserError(f"nesting deeper than {MAX_DEPTH} levels at {'.'.join(map(str, path))}")
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value), depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i), depth + 1)

    walk(node, (), 0)
    return lines


def dotted(path: KeyPath) -> str:
    """Write a key path as users read it: ``checks[0].thresholds.loss`` ("" for the top level)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """Return the line of ``path``, or of its nearest ancestor in ``lines`` (1 when none is)."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)
