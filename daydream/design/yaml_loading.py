"""Reading YAML written by people (cohort specs, catalogs) without letting aliases blow it up.

YAML aliases (``*name``) repeat a node without copying it, so a few hundred bytes can describe a
document of billions of nodes ("billion laughs"). PyYAML builds such a document cheaply, as shared
references, but everything that then walks it (line maps, compilation, canonical JSON) walks every
copy. ``load_yaml`` composes the node graph once, counts the nodes the document holds with every
alias expanded (linear in the graph, thanks to memoisation) and refuses a document above
``MAX_NODES`` or with a recursive alias before anything walks it.
"""

from __future__ import annotations

from typing import Any

import yaml

# Far above any real spec or catalog (the starter catalog is ~1,000 nodes; a spec that includes
# 10,000 combos ~20,000), far below what takes more than a moment to walk.
MAX_NODES = 2_000_000


class YAMLTooLarge(ValueError):
    """The document is too large once its aliases are expanded, or refers to itself."""


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """How many nodes ``node`` holds with every alias expanded; ``YAMLTooLarge`` above ``limit``."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YAMLTooLarge("an alias refers to a node that contains it (a recursive document)")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for item in n.value:
                total += size(item)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        active.discard(key)
        if total > limit:
            raise YAMLTooLarge(f"aliases expand it to more than {limit:,} nodes (an alias bomb?)")
        sizes[key] = total
        return total

    try:
        return size(node)
    except RecursionError:
        raise YAMLTooLarge("it is nested too deeply") from None


def load_yaml(text: str, *, limit: int = MAX_NODES) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` safely: (data, node graph). Raises ``yaml.YAMLError`` or ``YAMLTooLarge``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        expanded_size(node, limit)
        return loader.construct_document(node), node
    except RecursionError:
        raise YAMLTooLarge("it is nested too deeply") from None
    finally:
        loader.dispose()
