"""Compiling a loaded cohort spec into design rows: the rules, in declaration order, reshape a list
of *factors* (groups of axes that move together) whose cartesian product gives the rows.

``compile_spec`` returns plain dicts keyed in the spec's field order, shuffled when the spec sets a
seed; ``design_rows`` makes the same rows one at a time (for designs too large to hold, such as a
million-generation plan). A rule that cannot apply (unknown axis, value outside a domain,
unbalanced or empty pair) raises a ``SpecError`` naming the rule's place in the spec file.
"""

from __future__ import annotations

import itertools
import math
import operator
import random
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from daydream.errors import SpecError
from daydream.design.spec_dsl import (
    MAX_ROWS,
    REPLICATE_AXES,
    PairRule,
    Rule,
    Spec,
    SubsetRule,
    TieRule,
    TupleRule,
    _dedupe,
    canonical_axis,
)


def _check_size(count: int, where: str) -> None:
    if count > MAX_ROWS:
        raise SpecError(f"{where}: the design has {count:,} rows; at most {MAX_ROWS:,} are supported "
                        "(narrow it with subsets, pairs or tuples, or split it into several cohorts)")


@dataclass
class _Factor:
    """Axes that move together, and the value tuples they may take."""

    name: str
    axes: tuple[str, ...]
    items: list[tuple]
    # Tuples merged into this factor (name -> axes), so later rules can still name them.
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _norm(axis: str, value: Any) -> Any:
    if axis in REPLICATE_AXES:
        try:
            return int(str(value).strip())
        except ValueError:
            return str(value)
    return str(value).strip()


def compile_spec(spec: Spec) -> list[dict[str, Any]]:
    """Apply the rules in order and expand the factors' product into design rows (plain dicts)."""
    return list(design_rows(spec))


def design_rows(spec: Spec) -> "DesignRows":
    """Apply the rules in order; the rows themselves are made on demand (see ``DesignRows``).

    Rule errors and the size limit are raised here, before any row is made.
    """
    factors = [_Factor(name, (name,), [(v,) for v in levels]) for name, levels in spec.axes.items()]
    for rule in spec.rules:
        if isinstance(rule, TupleRule):
            present = {a for f in factors for a in f.axes}
            clash = [a for a in rule.axes if a in present]
            if clash:
                raise SpecError(f"{rule.where}: tuple {rule.name!r}: axis {clash[0]!r} is already defined "
                                "by an earlier rule")
            factors.append(_Factor(rule.name, tuple(rule.axes), list(rule.items),
                                   {rule.name: tuple(rule.axes)}))
        elif isinstance(rule, SubsetRule):
            _apply_subset(factors, rule)
        elif isinstance(rule, TieRule):
            factors = _apply_tie(factors, rule)
        else:
            factors = _apply_pair(factors, rule)

    names = [a for f in factors for a in f.axes]
    order = list(spec.field_order or [])
    order += [a for a in spec.axis_order() if a not in order]
    perm = [names.index(a) for a in order]
    count = math.prod(len(f.items) for f in factors)
    _check_size(count, str(spec.path))
    return DesignRows(tuple(order), tuple(f.items for f in factors), tuple(perm), count, spec.seed)


class DesignRows:
    """The design rows of a compiled spec, made one at a time: a million rows never sit in memory.

    ``len()`` is the number of rows; every iteration makes them again, in the order ``compile_spec``
    lists them: the factors' cartesian product (the last factor varying fastest), shuffled when the
    spec sets a seed. The shuffle is the very one a list of the rows would get
    (``random.Random(seed).shuffle``), applied to row numbers kept in a compact array (4 bytes a row)
    from which each row is rebuilt, so the order is identical to shuffling the rows themselves.
    """

    def __init__(self, order: tuple[str, ...], factors: tuple[list[tuple], ...], perm: tuple[int, ...],
                 count: int, seed: int | None) -> None:
        self.order = order
        self._factors = factors
        self._pick: Callable[[tuple], tuple] | None
        if perm == tuple(range(len(perm))):
            self._pick = None
        elif len(perm) == 1:
            self._pick = lambda flat, i=perm[0]: (flat[i],)
        else:
            self._pick = operator.itemgetter(*perm)
        self._count = count
        self._seed = seed
        self._shuffled: array | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order, pick, chain = self.order, self._pick, itertools.chain.from_iterable
        if self._seed is None:
            for combo in itertools.product(*self._factors):
                flat = tuple(chain(combo))
                yield dict(zip(order, flat if pick is None else pick(flat)))
            return
        factors = self._factors
        sizes = [len(f) for f in factors]
        last = len(factors) - 1
        for index in self._permutation():
            parts: list[tuple] = [()] * len(factors)
            for i in range(last, -1, -1):  # mixed radix: the last factor is the fastest digit
                index, digit = divmod(index, sizes[i])
                parts[i] = factors[i][digit]
            flat = tuple(chain(parts))
            yield dict(zip(order, flat if pick is None else pick(flat)))

    def _permutation(self) -> array:
        if self._shuffled is None:
            numbers = array("I" if self._count < 2**32 else "Q", range(self._count))
            random.Random(self._seed).shuffle(numbers)  # type: ignore[arg-type]
            self._shuffled = numbers
        return self._shuffled


def _find(factors: list[_Factor], name: str, rule: Rule, role: str) -> tuple[int, list[int]]:
    """Locate a rule side: a factor by name (all its axes) or the factor holding an axis."""
    for i, f in enumerate(factors):
        if name in f.axes:
            return i, [f.axes.index(name)]
    for i, f in enumerate(factors):
        if name in f.groups:
            return i, [f.axes.index(a) for a in f.groups[name]]
    for i, f in enumerate(factors):
        if f.name == name and len(f.axes) > 1:
            return i, list(range(len(f.axes)))
    known = [a for f in factors for a in f.axes] + [f.name for f in factors if len(f.axes) > 1]
    known += [g for f in factors for g in f.groups if g not in known]
    raise SpecError(f"{rule.where}: {role} {name!r} is not an axis or tuple of this spec; expected one "
                    f"of {', '.join(known)}")


def _show(values: Any, limit: int = 8) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")


def _apply_subset(factors: list[_Factor], rule: SubsetRule) -> None:
    i, (j,) = _find(factors, rule.axis, rule, "axis")
    f = factors[i]
    domain = list(dict.fromkeys(item[j] for item in f.items))
    outside = [v for v in rule.levels if v not in domain]
    if outside:
        raise SpecError(f"{rule.where}: subset value {outside[0]!r} is not a level of {rule.axis!r} "
                        f"(levels: {_show(domain)})")
    keep = set(rule.levels)
    items = [item for item in f.items if item[j] in keep]
    if not items:
        raise SpecError(f"{rule.where}: subset removes every level of {rule.axis!r}")
    factors[i] = _Factor(f.name, f.axes, items, f.groups)


def _merge(factors: list[_Factor], indexes: list[int], name: str) -> tuple[list[_Factor], _Factor]:
    """Replace several factors by their product (at the first one's position)."""
    parts = [factors[i] for i in indexes]
    axes = tuple(a for p in parts for a in p.axes)
    items = [tuple(itertools.chain.from_iterable(c)) for c in itertools.product(*[p.items for p in parts])]
    groups = {k: v for p in parts for k, v in p.groups.items()}
    merged = _Factor(name if len(parts) > 1 else parts[0].name, axes, items, groups)
    out = []
    for i, f in enumerate(factors):
        if i == indexes[0]:
            out.append(merged)
        elif i not in indexes:
            out.append(f)
    return out, merged


def _apply_tie(factors: list[_Factor], rule: TieRule) -> list[_Factor]:
    located = [_find(factors, a, rule, "axis") for a in rule.axes]
    for name, (i, cols) in zip(rule.axes, located):
        if len(cols) > 1:
            raise SpecError(f"{rule.where}: tie {rule.name!r}: {name!r} is a tuple "
                            f"({', '.join(factors[i].axes[c] for c in cols)}); a tie joins single axes, name one of its axes")
    domains = {a: list(dict.fromkeys(it[j[0]] for it in factors[i].items))
               for a, (i, j) in zip(rule.axes, located)}
    common = set.intersection(*(set(d) for d in domains.values()))
    if not common:
        detail = "; ".join(f"{a}: {_show(d)}" for a, d in domains.items())
        raise SpecError(f"{rule.where}: tie {rule.name!r} has no common value ({detail})")
    indexes = sorted({i for i, _ in located})
    _check_size(math.prod(len(factors[i].items) for i in indexes), f"{rule.where}: tie {rule.name!r}")
    factors, merged = _merge(factors, indexes, rule.name)
    cols = [merged.axes.index(a) for a in rule.axes]
    merged.items = [it for it in merged.items if len({it[c] for c in cols}) == 1]
    return factors


def _side_value(rule: PairRule, label: str, axes: list[str], raw: Any, side: str) -> tuple:
    if len(axes) == 1:
        if isinstance(raw, list):
            if len(raw) != 1:
                raise SpecError(f"{label}: pair {rule.name!r}: {side} value {raw!r} has {len(raw)} parts; "
                                f"expected one ({axes[0]})")
            raw = raw[0]
        return (_norm(axes[0], raw),)
    if not isinstance(raw, list) or len(raw) != len(axes):
        raise SpecError(f"{label}: pair {rule.name!r}: {side} value {raw!r}; expected a list of "
                        f"{len(axes)} ({', '.join(axes)})")
    return tuple(_norm(a, v) for a, v in zip(axes, raw))


def _unwrap(value: tuple) -> Any:
    return value[0] if len(value) == 1 else list(value)


def _apply_pair(factors: list[_Factor], rule: PairRule) -> list[_Factor]:
    li, lcols = _find(factors, rule.left, rule, "left side")
    ri, rcols = _find(factors, rule.right, rule, "right side")
    laxes = [factors[li].axes[c] for c in lcols]
    raxes = [factors[ri].axes[c] for c in rcols]
    lget = lambda it: tuple(it[c] for c in lcols)  # noqa: E731
    rget = lambda it: tuple(it[c] for c in rcols)  # noqa: E731
    ldomain = list(dict.fromkeys(lget(it) for it in factors[li].items))
    rdomain = list(dict.fromkeys(rget(it) for it in factors[ri].items))
    lset, rset = set(ldomain), set(rdomain)

    pairs: list[tuple[tuple, tuple]] = []
    for label, entry in rule.allowed:
        if isinstance(entry, dict):
            header = list(entry)
            entry = {canonical_axis(k): v for k, v in entry.items()}  # e.g. draft_template_replicate
            cols = [a for a in laxes + raxes if a not in entry]
            if cols:
                raise SpecError(f"{label.split(': row')[0]}:1: header {','.join(header)!r} has no column "
                                f"{cols[0]!r} (pair {rule.name!r} needs {', '.join(laxes + raxes)})")
            lv = tuple(_norm(a, entry[a]) for a in laxes)
            rv = tuple(_norm(a, entry[a]) for a in raxes)
        else:
            if not isinstance(entry, list) or len(entry) != 2:
                raise SpecError(f"{label}: pair {rule.name!r}: allowed entry {entry!r}; expected "
                                "[left, right]")
            lv = _side_value(rule, label, laxes, entry[0], "left")
            rv = _side_value(rule, label, raxes, entry[1], "right")
        for value, domain, ordered, side in ((lv, lset, ldomain, rule.left), (rv, rset, rdomain, rule.right)):
            if value not in domain:
                raise SpecError(f"{label}: pair {rule.name!r}: value {_unwrap(value)!r} is not in the "
                                f"domain of {side!r} (expected one of: {_show(map(_unwrap, ordered))})")
        pairs.append((lv, rv))
    pairs = _dedupe(pairs)

    if rule.balance:
        checks = []
        if rule.balance in ("left", "both"):
            checks.append((rule.left, ldomain, Counter(p[0] for p in pairs)))
        if rule.balance in ("right", "both"):
            checks.append((rule.right, rdomain, Counter(p[1] for p in pairs)))
        for side, domain, counts in checks:
            # Only levels the allowed pairs name count: a level no pair names is dropped by the
            # pair (as the previous pipeline's DSL did), not an imbalance.
            per_value = {str(_unwrap(v)): counts[v] for v in domain if counts.get(v)}
            if len(set(per_value.values())) > 1:
                detail = ", ".join(f"{k}={n}" for k, n in per_value.items())
                raise SpecError(f"{rule.where}: pair {rule.name!r} is not balanced on {side!r}: {detail}")

    allowed = set(pairs)
    if li == ri:
        f = factors[li]
        items = [it for it in f.items if (lget(it), rget(it)) in allowed]
        merged = _Factor(rule.name, f.axes, items, f.groups)
        factors = [merged if i == li else g for i, g in enumerate(factors)]
    else:
        by_right: dict[tuple, list[tuple]] = {}
        for it in factors[ri].items:
            by_right.setdefault(rget(it), []).append(it)
        partners: dict[tuple, list[tuple]] = {}
        for lv, rv in pairs:
            partners.setdefault(lv, []).append(rv)
        items = [lit + rit for lit in factors[li].items for rv in partners.get(lget(lit), [])
                 for rit in by_right.get(rv, [])]
        merged = _Factor(rule.name, factors[li].axes + factors[ri].axes, items,
                         {**factors[li].groups, **factors[ri].groups})
        factors = [merged if i == li else g for i, g in enumerate(factors) if i != ri]
    if not merged.items:
        raise SpecError(f"{rule.where}: pair {rule.name!r} leaves no combinations")
    return factors
