"""The cohort spec DSL: reading a YAML spec of axes and coupling rules into a checked ``Spec``.

``load_spec`` reads a spec (resolving ``@file:`` includes relative to it, normalising axis aliases,
replicates and concept combinations) and checks everything that can be checked without a catalog;
``daydream.design.spec_compile`` turns the result into design rows (``compile_spec``; it imports this
module, never the reverse). Every error names the spec file, the key (with its YAML line where known), the bad value and what
was expected.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daydream.design import ids
from daydream.errors import SpecError
from daydream.ledger.store import canonical_json, text_hash
from daydream.design.yaml_loading import YAMLTooLarge, load_yaml

KNOWN_AXES = (
    "combo_id", "draft_gen_id", "draft_template", "draft_llm", "draft_replicate",
    "essay_gen_id", "essay_template", "essay_llm", "essay_replicate",
    "evaluation_template", "evaluation_llm", "evaluation_replicate",
)
AXIS_ALIASES = {
    "combo": "combo_id",
    "combos": "combo_id",
    "draft_template_replicate": "draft_replicate",
    "essay_template_replicate": "essay_replicate",
    "evaluation_template_replicate": "evaluation_replicate",
}
REPLICATE_AXES = frozenset({"draft_replicate", "essay_replicate", "evaluation_replicate"})
DESCRIPTION_LEVELS = ("sentence", "paragraph", "article")
TOP_LEVEL_KEYS = ("axes", "rules", "output", "combos", "catalog", "cohort_id", "description")
RULE_KINDS = {"subset": "subsets", "subsets": "subsets", "tie": "ties", "ties": "ties",
              "pair": "pairs", "pairs": "pairs", "tuple": "tuples", "tuples": "tuples"}
BALANCE = ("left", "right", "both")
# Rows are built in memory (a dict each); far beyond this a typo such as ``essay_replicate: 100000``
# would exhaust memory instead of failing, so designs (and replicate counts, combo generators) are
# refused above it before anything is expanded.
MAX_ROWS = 5_000_000


def canonical_axis(name: str) -> str:
    """The canonical name of an axis (``draft_template_replicate`` -> ``draft_replicate`` …)."""
    return AXIS_ALIASES.get(name, name)


# ----------------------------------------------------------------------------- spec objects
@dataclass
class SubsetRule:
    name: str
    where: str
    axis: str
    levels: list[Any]


@dataclass
class TieRule:
    name: str
    where: str
    axes: list[str]


@dataclass
class PairRule:
    name: str
    where: str
    left: str
    right: str
    # Each entry: (source label for errors, left raw, right raw) or (label, {column: value}) rows.
    allowed: list[tuple[str, Any]]
    balance: str | None


@dataclass
class TupleRule:
    name: str
    where: str
    axes: list[str]
    items: list[tuple]


Rule = SubsetRule | TieRule | PairRule | TupleRule


@dataclass
class Spec:
    """A loaded spec: normalised axes, rules in declaration order, output settings, combos."""

    path: Path
    text: str
    axes: dict[str, list[Any]]
    rules: list[Rule]
    field_order: list[str] | None
    seed: int | None
    combos: dict[str, dict[str, Any]]
    includes: dict[str, str] = field(default_factory=dict)
    catalog: Path | None = None
    cohort_id: str | None = None

    @property
    def spec_hash(self) -> str:
        """sha256 of the spec text (the text itself is stored under this hash)."""
        return text_hash(self.text)

    @property
    def includes_hash(self) -> str:
        """sha256 over the included files' hashes, so an edited ``@file:`` counts as a change."""
        return text_hash(canonical_json({k: text_hash(v) for k, v in sorted(self.includes.items())}))

    def axis_order(self) -> list[str]:
        """Axes in declaration order, tuple axes where their rule introduces them."""
        order = list(self.axes)
        for rule in self.rules:
            if isinstance(rule, TupleRule):
                order.extend(a for a in rule.axes if a not in order)
        return order

    @property
    def default_cohort_id(self) -> str:
        """The cohort id used when none is given: the spec's stem, or its folder for config.yaml."""
        if self.cohort_id:
            return self.cohort_id
        if self.path.stem in ("config", "spec") and self.path.parent.name:
            return self.path.resolve().parent.name
        return self.path.stem


# ----------------------------------------------------------------------------- reading helpers
class _Reader:
    """Knows the spec file and its YAML line numbers; builds located error messages."""

    def __init__(self, path: Path, lines: dict[tuple, int]) -> None:
        self.path = path
        self.lines = lines
        self.includes: dict[str, str] = {}

    def where(self, key: tuple) -> str:
        line = None
        probe = tuple(key)
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        dotted = ".".join(str(k) for k in key) or "(top level)"
        return f"{self.path}:{line}: {dotted}" if line else f"{self.path}: {dotted}"

    def error(self, key: tuple, message: str) -> SpecError:
        return SpecError(f"{self.where(key)}: {message}")

    def include(self, ref: str, key: tuple) -> tuple[Path, list[Any], list[str] | None]:
        """Read an ``@file:`` include: (path, rows, header). CSV rows are dicts, others plain."""
        rel = ref[len("@file:"):].strip()
        target = (self.path.parent / rel)
        if not rel or not target.is_file():
            raise self.error(key, f"included file {rel!r} not found (looked for {target})")
        try:
            # utf-8-sig: spreadsheet exports start with a byte-order mark that would glue onto the header.
            text = target.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(key, f"cannot read included file {rel!r}: {exc}") from None
        self.includes[rel] = text
        suffix = target.suffix.lower()
        label = f"{target}"
        if suffix == ".csv":
            # Keep each record's line in the file, so errors point at the right row past blank lines.
            parsed = csv.reader(io.StringIO(text, newline=""))
            rows = [(parsed.line_num, r) for r in parsed if any(c.strip() for c in r)]
            if not rows:
                raise self.error(key, f"included file {rel!r} is empty; expected a CSV header and rows")
            header_line, first = rows[0]
            header = [c.strip() for c in first]
            if any(not h for h in header):
                raise SpecError(f"{label}:{header_line}: header has a blank column name: {','.join(header)!r}")
            if len(rows) == 1:
                raise self.error(key, f"included file {rel!r} has a header but no data rows")
            out = []
            for lineno, row in rows[1:]:
                if len(row) != len(header):
                    raise SpecError(f"{label}: row {lineno}: has {len(row)} cells, header has "
                                    f"{len(header)} ({','.join(header)})")
                cells = [c.strip() for c in row]
                for col, cell in zip(header, cells):
                    if not cell:
                        raise SpecError(f"{label}: row {lineno}: column {col!r} is blank; "
                                        "expected a value")
                out.append(dict(zip(header, cells), __row__=f"{label}: row {lineno}"))
            return target, out, header
        if suffix in (".yaml", ".yml", ".json"):
            try:
                data = json.loads(text) if suffix == ".json" else load_yaml(text)[0]
            except YAMLTooLarge as exc:
                raise self.error(key, f"included file {rel!r} refused: {exc}") from None
            except (ValueError, yaml.YAMLError) as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise self.error(key, f"included file {rel!r} is malformed{where}: {problem}") from None
            if data in (None, [], {}):
                raise self.error(key, f"included file {rel!r} is empty; expected a list")
            if not isinstance(data, list):
                raise self.error(key, f"included file {rel!r} holds a {type(data).__name__}; "
                                      "expected a list")
            return target, data, None
        if suffix == ".txt":
            values = [ln.strip() for ln in text.splitlines()]
            values = [v for v in values if v and not v.startswith("#")]
            if not values:
                raise self.error(key, f"included file {rel!r} is empty; expected one value per line")
            return target, values, None
        raise self.error(key, f"included file {rel!r} has an unsupported type {suffix or '(none)'}; "
                              "expected .csv, .yaml, .yml, .json or .txt")

    def column_values(self, ref: str, key: tuple, names: list[str]) -> list[Any]:
        """Values of a one-column include: the column named one of ``names`` (CSV needs a header)."""
        target, rows, header = self.include(ref, key)
        if header is None:
            return rows
        names = list(dict.fromkeys(names))
        column = next((n for n in names if n in header), None)
        if column is None:
            if len(header) == 1 and header[0] not in names:
                raise SpecError(f"{target}:1: no header row: first row {header[0]!r} should name the "
                                f"column ({' or '.join(names)})")
            raise SpecError(f"{target}:1: header {','.join(header)!r} has no column "
                            f"{' or '.join(repr(n) for n in names)}")
        return [r[column] for r in rows]


def _line_map(node: yaml.Node | None, prefix: tuple = (), out: dict | None = None,
              repeats: list | None = None) -> dict[tuple, int]:
    """Key path -> 1-based line of that key (or list item) in the YAML source.

    A key given twice in one mapping is appended to ``repeats`` as (path, line, first line): YAML
    loaders keep the last value silently, which would drop half of what the user wrote.
    """
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            line = key_node.start_mark.line + 1
            if path in out and repeats is not None:
                repeats.append((path, line, out[path]))
            out.setdefault(path, line)
            _line_map(value_node, path, out, repeats)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = prefix + (i,)
            out[path] = item.start_mark.line + 1
            _line_map(item, path, out, repeats)
    return out


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("@file:")


def _replicate(reader: _Reader, key: tuple, value: Any) -> int:
    if isinstance(value, bool):
        raise reader.error(key, f"replicate {value!r} is not an integer; expected integers >= 1")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise reader.error(key, f"replicate {value!r} is not an integer; expected integers >= 1") from None
    if number < 1:
        raise reader.error(key, f"replicate {number} is < 1; expected integers >= 1")
    return number


def _scalar(reader: _Reader, key: tuple, value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise reader.error(key, f"level {value!r} is not a plain value; expected a string")
    text = str(value).strip()
    if not text:
        raise reader.error(key, "level is blank; expected a non-empty string")
    return text


# ----------------------------------------------------------------------------- loading
def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file (YAML), resolving ``@file:`` includes relative to it."""
    spec_path = Path(path)
    if spec_path.is_dir():
        if not (spec_path / "config.yaml").is_file():
            raise SpecError(f"spec path {str(spec_path)!r} is a folder without a config.yaml; expected "
                            "a spec file or a folder holding config.yaml")
        spec_path = spec_path / "config.yaml"
    if not spec_path.is_file():
        raise SpecError(f"spec file {str(spec_path)!r} not found")
    try:
        text = spec_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec_path}: cannot read spec: {exc}") from None
    try:
        data, node = load_yaml(text)  # parsed once; aliases that would explode it are refused
    except YAMLTooLarge as exc:
        raise SpecError(f"{spec_path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{spec_path}{line}: malformed YAML: {problem}") from None
    repeats: list[tuple[tuple, int, int]] = []
    reader = _Reader(spec_path, _line_map(node, repeats=repeats))
    if repeats:
        path, line, first = repeats[0]
        dotted = ".".join(str(k) for k in path)
        raise SpecError(f"{spec_path}:{line}: {dotted}: key {path[-1]!r} is given twice (first at line "
                        f"{first}); expected each key once")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise reader.error((), f"spec is a {type(data).__name__}; expected a mapping with 'axes'")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise reader.error((key,), f"unknown top-level key {key!r}; expected one of "
                                       f"{', '.join(TOP_LEVEL_KEYS)}")

    combos: dict[str, dict[str, Any]] = {}
    axes: dict[str, list[Any]] = {}
    raw_axes = data.get("axes") or {}
    if not isinstance(raw_axes, dict):
        raise reader.error(("axes",), "expected a mapping of axis name -> levels")
    for name, levels in raw_axes.items():
        canon = canonical_axis(str(name))
        if canon not in KNOWN_AXES:
            raise reader.error(("axes", name), f"unknown axis {name!r}; expected one of "
                                               f"{', '.join(KNOWN_AXES)} (or combo)")
        if canon in axes:
            raise reader.error(("axes", name), f"axis {canon!r} is given twice (also under an alias)")
        axes[canon] = _axis_levels(reader, ("axes", name), str(name), canon, levels, combos)
    if "combos" in data:
        generated = _combo_levels(reader, ("combos",), data["combos"], combos)
        existing = axes.get("combo_id", [])
        axes["combo_id"] = existing + [c for c in generated if c not in existing]

    rules = _load_rules(reader, data.get("rules"), axes)
    if not axes and not any(isinstance(r, TupleRule) for r in rules):
        raise reader.error(("axes",), "spec defines no axes and no tuples; expected at least one axis")

    output = data.get("output") or {}
    if not isinstance(output, dict):
        raise reader.error(("output",), "expected a mapping with field_order and/or seed")
    for key in output:
        if key not in ("field_order", "seed"):
            raise reader.error(("output", key), f"unknown output key {key!r}; expected field_order or seed")
    spec = Spec(spec_path, text, axes, rules, None, None, combos)
    known = spec.axis_order()
    field_order = output.get("field_order")
    if field_order is not None:
        if not isinstance(field_order, list):
            raise reader.error(("output", "field_order"), "expected a list of axis names")
        canon_order = []
        for i, name in enumerate(field_order):
            canon = canonical_axis(str(name))
            if canon not in known:
                raise reader.error(("output", "field_order", i),
                                   f"unknown axis {name!r}; expected one of {', '.join(known)}")
            if canon not in canon_order:
                canon_order.append(canon)
        spec.field_order = canon_order
    if "seed" in output:
        seed = output["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise reader.error(("output", "seed"), f"seed {seed!r} is not an integer")
        spec.seed = seed
    if data.get("catalog") is not None:
        spec.catalog = (spec_path.parent / str(data["catalog"])).resolve()
    if data.get("cohort_id") is not None:
        spec.cohort_id = _scalar(reader, ("cohort_id",), data["cohort_id"])
    spec.includes = reader.includes
    return spec


def _axis_levels(reader: _Reader, key: tuple, name: str, canon: str, levels: Any,
                 combos: dict[str, dict[str, Any]]) -> list[Any]:
    if canon == "combo_id":
        return _combo_levels(reader, key, levels, combos)
    if canon in REPLICATE_AXES and isinstance(levels, int) and not isinstance(levels, bool):
        if levels < 1:
            raise reader.error(key, f"replicate count {levels} is < 1; expected an integer >= 1")
        if levels > MAX_ROWS:
            raise reader.error(key, f"replicate count {levels:,} is too large; at most {MAX_ROWS:,}")
        return list(range(1, levels + 1))
    if _is_ref(levels):
        values = reader.column_values(levels, key, [canon, name, "id", "value"])
    elif isinstance(levels, list):
        values = levels
    elif levels is None:
        values = []
    else:
        values = [levels]
    if not values:
        raise reader.error(key, "axis has no levels; expected a non-empty list")
    out: list[Any] = []
    for i, v in enumerate(values):
        norm = _replicate(reader, key + (i,), v) if canon in REPLICATE_AXES else _scalar(reader, key + (i,), v)
        if norm in out:
            # A repeated level is almost always a slip (a copy-paste, or '1, 1' meant as two
            # replicates); merging it silently would plan fewer rows than the user counted.
            raise reader.error(key + (i,), f"level {norm!r} is listed twice (first as item "
                                           f"{out.index(norm)}); expected distinct levels")
        out.append(norm)
    return out


def _combo_levels(reader: _Reader, key: tuple, levels: Any, combos: dict[str, dict[str, Any]]) -> list[str]:
    """Combo ids from existing ids, explicit ``{concepts, level}`` mappings or a k-of-n generator."""
    if isinstance(levels, dict):
        return _generate_combos(reader, key, levels, combos)
    if _is_ref(levels):
        values = reader.column_values(levels, key, ["combo_id", "combo", "id"])
    elif isinstance(levels, list):
        values = levels
    else:
        values = [levels] if levels is not None else []
    if not values:
        raise reader.error(key, "no combos; expected combo ids, {concepts, level} mappings or a generator")
    out: list[str] = []
    for i, v in enumerate(values):
        if isinstance(v, dict) and _is_generator(v):
            out.extend(c for c in _generate_combos(reader, key + (i,), v, combos) if c not in out)
            continue
        if isinstance(v, dict):
            for k in v:
                if k not in ("concepts", "level", "id", "k"):
                    # A misspelt 'level' would otherwise silently fall back to paragraph.
                    raise reader.error(key + (i, k), f"unknown combo key {k!r}; expected concepts, level "
                                                     "(and optionally id, k)")
            concepts = _concept_list(reader, key + (i, "concepts"), v.get("concepts"))
            level = _level(reader, key + (i, "level"), v.get("level", "paragraph"))
            cid = ids.combo_id(concepts, level, len(concepts))
            if v.get("id") not in (None, cid):
                raise reader.error(key + (i, "id"), f"combo id {v['id']!r} does not match its concepts "
                                                    f"(expected {cid})")
            combos[cid] = {"concept_ids": sorted(concepts), "level": level, "k": len(concepts)}
        else:
            cid = _scalar(reader, key + (i,), v)
        if cid not in out:
            out.append(cid)
    return out


def _is_generator(body: dict) -> bool:
    """A combo mapping asks for k-of-n when it gives a k other than its number of concepts."""
    if "k" not in body:
        return False
    concepts = body.get("concepts")
    return not (isinstance(concepts, list) and str(body["k"]) == str(len(concepts)))


def _generate_combos(reader: _Reader, key: tuple, body: dict, combos: dict[str, dict[str, Any]]) -> list[str]:
    for k in body:
        if k not in ("concepts", "k", "level"):
            raise reader.error(key + (k,), f"unknown combo generator key {k!r}; expected concepts, k, level")
    concepts = _concept_list(reader, key + ("concepts",), body.get("concepts"))
    level = _level(reader, key + ("level",), body.get("level", "paragraph"))
    k_raw = body.get("k")
    try:
        k = int(k_raw)
        if isinstance(k_raw, bool) or k < 1 or k > len(concepts):
            raise ValueError
    except (TypeError, ValueError):
        raise reader.error(key + ("k",), f"k {k_raw!r} must be an integer between 1 and the number of "
                                         f"concepts ({len(concepts)})") from None
    if math.comb(len(concepts), k) > MAX_ROWS:
        raise reader.error(key, f"{k} of {len(concepts)} concepts gives {math.comb(len(concepts), k):,} "
                                f"combinations; at most {MAX_ROWS:,} (use fewer concepts or another k)")
    out = []
    for group in itertools.combinations(concepts, k):
        cid = ids.combo_id(group, level, k)
        combos[cid] = {"concept_ids": sorted(group), "level": level, "k": k}
        out.append(cid)
    return out


def _concept_list(reader: _Reader, key: tuple, value: Any) -> list[str]:
    if _is_ref(value):
        values = reader.column_values(value, key, ["concept_id", "concepts", "concept", "id"])
    elif isinstance(value, list):
        values = value
    else:
        raise reader.error(key, f"concepts {value!r}: expected a list of concept ids or '@file:…'")
    out = []
    for i, v in enumerate(values):
        cid = _scalar(reader, key + (i,), v)
        if cid not in out:
            out.append(cid)
    if not out:
        raise reader.error(key, "empty concept list; expected at least one concept id")
    return out


def _level(reader: _Reader, key: tuple, value: Any) -> str:
    if value not in DESCRIPTION_LEVELS:
        raise reader.error(key, f"description level {value!r}; expected one of {', '.join(DESCRIPTION_LEVELS)}")
    return str(value)


def _load_rules(reader: _Reader, raw: Any, axes: dict[str, list[Any]]) -> list[Rule]:
    """Rules in declaration order, from the mapping form (kind -> {name: body}) or the list form."""
    entries: list[tuple[str, str, Any, tuple]] = []  # (kind, name, body, key)
    if raw is None:
        return []
    if isinstance(raw, dict):
        for kind, group in raw.items():
            plural = RULE_KINDS.get(str(kind))
            if plural is None:
                raise reader.error(("rules", kind), f"unknown rule kind {kind!r}; expected subsets, ties, "
                                                    "pairs or tuples")
            if isinstance(group, dict):
                for name, body in group.items():
                    entries.append((plural, str(name), body, ("rules", kind, name)))
            elif isinstance(group, list):
                for i, body in enumerate(group):
                    entries.append((plural, f"{plural[:-1]}_{i + 1}", body, ("rules", kind, i)))
            else:
                raise reader.error(("rules", kind), "expected a mapping of rule name -> rule")
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or len(item) != 1:
                raise reader.error(("rules", i), "each rule must be a one-key mapping like {pair: {…}}")
            kind, body = next(iter(item.items()))
            plural = RULE_KINDS.get(str(kind))
            if plural is None:
                raise reader.error(("rules", i, kind), f"unknown rule kind {kind!r}; expected subset, tie, "
                                                       "pair or tuple")
            name = body.get("name") if isinstance(body, dict) else None
            entries.append((plural, str(name or f"{plural[:-1]}_{i + 1}"), body, ("rules", i, kind)))
    else:
        raise reader.error(("rules",), "expected a mapping (kind -> {name: rule}) or a list of rules")

    rules: list[Rule] = []
    for kind, name, body, key in entries:
        where = reader.where(key)
        if kind == "subsets":
            rules.append(_subset_rule(reader, name, body, key, where))
        elif kind == "ties":
            axes_list = body.get("axes") if isinstance(body, dict) else body
            if not isinstance(axes_list, list) or len(axes_list) < 2:
                raise reader.error(key, f"tie {name!r} needs a list of at least two axes; got {axes_list!r}")
            tie_axes = [canonical_axis(str(a)) for a in axes_list]
            _no_repeat(reader, key, f"tie {name!r}", tie_axes)
            rules.append(TieRule(name, where, tie_axes))
        elif kind == "pairs":
            rules.append(_pair_rule(reader, name, body, key, where))
        else:
            rules.append(_tuple_rule(reader, name, body, key, where, axes))
    return rules


def _subset_rule(reader: _Reader, name: str, body: Any, key: tuple, where: str) -> SubsetRule:
    if isinstance(body, dict):
        axis = canonical_axis(str(body.get("axis", name)))
        levels = body.get("levels", body.get("keep"))
        lkey = key + ("levels",)
    else:
        axis, levels, lkey = canonical_axis(name), body, key
    if _is_ref(levels):
        values = reader.column_values(levels, lkey, [axis, "id", "value"])
    elif isinstance(levels, list):
        values = levels
    else:
        raise reader.error(lkey, f"subset {name!r}: levels {levels!r}; expected a list or '@file:…'")
    if axis in REPLICATE_AXES:
        values = [_replicate(reader, lkey + (i,), v) for i, v in enumerate(values)]
    else:
        values = [_scalar(reader, lkey + (i,), v) for i, v in enumerate(values)]
    return SubsetRule(name, where, axis, values)


def _pair_rule(reader: _Reader, name: str, body: Any, key: tuple, where: str) -> PairRule:
    if not isinstance(body, dict):
        raise reader.error(key, f"pair {name!r}: expected a mapping with left, right, allowed")
    for k in body:
        if k not in ("left", "right", "allowed", "balance", "name"):
            raise reader.error(key + (k,), f"unknown pair key {k!r}; expected left, right, allowed, balance")
    for side in ("left", "right", "allowed"):
        if body.get(side) in (None, "", []):
            raise reader.error(key + (side,), f"pair {name!r} lacks '{side}'")
    balance = body.get("balance")
    if balance not in (None, *BALANCE):
        raise reader.error(key + ("balance",), f"balance {balance!r}; expected left, right or both")
    raw = body["allowed"]
    allowed: list[tuple[str, Any]] = []
    if _is_ref(raw):
        _target, rows, header = reader.include(raw, key + ("allowed",))
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                allowed.append((row.pop("__row__", f"{_target}: item {i + 1}"), row))
            else:
                allowed.append((f"{_target}: item {i + 1}", row))
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            allowed.append((reader.where(key + ("allowed", i)), item))
    else:
        raise reader.error(key + ("allowed",), f"pair {name!r}: allowed must be a list or '@file:…'")
    left, right = canonical_axis(str(body["left"])), canonical_axis(str(body["right"]))
    if left == right:
        raise reader.error(key + ("right",), f"pair {name!r}: left and right are both {left!r}; expected "
                                             "two different axes (use a subset to restrict one axis)")
    return PairRule(name, where, left, right, allowed, balance)


def _tuple_rule(reader: _Reader, name: str, body: Any, key: tuple, where: str,
                axes: dict[str, list[Any]]) -> TupleRule:
    if not isinstance(body, dict) or not isinstance(body.get("axes"), list) or not body["axes"]:
        raise reader.error(key, f"tuple {name!r}: expected a mapping with 'axes' (a list) and 'items'")
    for k in body:
        if k not in ("axes", "items", "name"):
            raise reader.error(key + (k,), f"unknown tuple key {k!r}; expected axes, items")
    tuple_axes = [canonical_axis(str(a)) for a in body["axes"]]
    _no_repeat(reader, key + ("axes",), f"tuple {name!r}", tuple_axes)
    for i, axis in enumerate(tuple_axes):
        if axis not in KNOWN_AXES:
            raise reader.error(key + ("axes", i), f"unknown axis {body['axes'][i]!r}; expected one of "
                                                  f"{', '.join(KNOWN_AXES)}")
        if axis in axes:
            raise reader.error(key + ("axes", i), f"tuple axis {axis!r} is also listed in 'axes'; "
                                                  "a tuple introduces its axes, remove it from 'axes'")
    raw = body.get("items")
    items: list[tuple] = []
    if _is_ref(raw):
        target, rows, header = reader.include(raw, key + ("items",))
        if header is not None:
            missing = [a for a in body["axes"] if a not in header and canonical_axis(a) not in header]
            if missing:
                raise SpecError(f"{target}:1: header {','.join(header)!r} does not match tuple axes "
                                f"{','.join(body['axes'])} (missing {', '.join(missing)})")
            for row in rows:
                values = [row[a] if a in row else row[canonical_axis(a)] for a in body["axes"]]
                items.append(_tuple_item(reader, key + ("items",), tuple_axes, values, row["__row__"]))
            return TupleRule(name, where, tuple_axes, _dedupe(items))
        raw = rows
    if not isinstance(raw, list) or not raw:
        raise reader.error(key + ("items",), f"tuple {name!r}: items must be a non-empty list or '@file:…'")
    for i, item in enumerate(raw):
        ikey = key + ("items", i)
        if isinstance(item, dict):
            item = [item.get(a, item.get(canonical_axis(a))) for a in body["axes"]]
        if not isinstance(item, list) or len(item) != len(tuple_axes):
            arity = len(item) if isinstance(item, list) else 1
            raise reader.error(ikey, f"tuple {name!r} item {item!r} has {arity} value(s); expected "
                                     f"{len(tuple_axes)} ({', '.join(tuple_axes)})")
        items.append(_tuple_item(reader, ikey, tuple_axes, item, None))
    return TupleRule(name, where, tuple_axes, _dedupe(items))


def _no_repeat(reader: _Reader, key: tuple, what: str, axes: list[str]) -> None:
    """A rule naming one axis twice would constrain it against itself (or write it twice)."""
    for i, axis in enumerate(axes):
        if axis in axes[:i]:
            where = key + (i,) if key[-1] == "axes" else key
            raise reader.error(where, f"{what} names axis {axis!r} twice; expected distinct axes")


def _tuple_item(reader: _Reader, key: tuple, axes: list[str], values: list[Any], label: str | None) -> tuple:
    """Normalise one tuple item; CSV items are located by their row, inline ones by YAML key."""
    out = []
    for axis, v in zip(axes, values):
        if label is None:
            out.append(_replicate(reader, key, v) if axis in REPLICATE_AXES else _scalar(reader, key, v))
        elif axis in REPLICATE_AXES:
            try:
                number = int(str(v).strip())
            except ValueError:
                raise SpecError(f"{label}: {axis} {v!r} is not an integer; expected integers >= 1") from None
            if number < 1:
                raise SpecError(f"{label}: {axis} {number} is < 1; expected integers >= 1")
            out.append(number)
        else:
            out.append(str(v).strip())
    return tuple(out)


def _dedupe(items: list) -> list:
    return list(dict.fromkeys(items))
