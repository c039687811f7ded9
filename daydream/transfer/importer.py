"""Import a DayDreaming Dagster data root (``1_raw/``, ``combo_mappings.csv``, ``gens/``, ``cohorts/``).

Every generation on disk becomes one ``GenerationImported`` event that keeps its original gen_id,
texts, metadata (verbatim) and score; the catalog, combos and cohorts become their usual events.
Each generation is validated on its own before anything is appended, so damaged folders are
reported (path and reason) and skipped while the rest is imported, and re-importing a root appends
only what the ledger does not have yet.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from daydream.ledger import events as ev
from daydream.design.catalog import LEGACY_PARSER_ALIASES, load_catalog
from daydream.errors import ConcurrencyConflict, DaydreamError, ImportFailed, LedgerIntegrityError
from daydream.ledger.store import Ledger, NewEvent, iso_utc, text_hash
from daydream.design.scales import DEFAULT_SCALE, Scale
from daydream.design.yaml_loading import YAMLTooLarge, load_yaml

STAGES = ("draft", "essay", "evaluation")
PARENT_STAGE = {"essay": "draft", "evaluation": "essay"}
DEFAULT_BATCH = 1000
_READERS = 4  # threads reading generation folders (overlap I/O on cold disks)
_READ_CHUNK = 500  # generation folders read ahead at most
# The last line is the bare number, optionally labelled: "7", "SCORE: 7", "**Score:** 7.5".
_SCORE_LINE = re.compile(r"^(?:[*_\s]*score[*_\s]*[:=]?[*_\s]*)?(-?\d+(?:\.\d+)?)[*_\s]*$", re.IGNORECASE)


# ----------------------------------------------------------------------------- report types
@dataclass(frozen=True)
class ImportProblem:
    """One damaged item: where it is, what is wrong, and whether it was still (partly) imported."""

    path: str
    reason: str
    stage: str | None = None
    gen_id: str | None = None
    imported: bool = False


@dataclass
class StageCounts:
    """Per-stage outcome; the four counts are disjoint and add up to the folders found.

    ``imported``: appended as completed; ``incomplete``: appended with status ``failed`` (no
    parsed.txt, parsed without raw, bad score …); ``skipped``: already in the ledger;
    ``unreadable``: not imported at all (no or broken metadata.json, missing parent …).
    """

    imported: int = 0
    skipped: int = 0
    incomplete: int = 0
    unreadable: int = 0

    @property
    def found(self) -> int:
        return self.imported + self.skipped + self.incomplete + self.unreadable


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    root: Path
    dry_run: bool
    catalog: str = "absent"
    catalog_hash: str | None = None
    combos_defined: int = 0
    combos_present: int = 0
    specs_recorded: int = 0
    specs_present: int = 0
    links_added: int = 0
    links_present: int = 0
    stages: dict[str, StageCounts] = field(default_factory=lambda: {s: StageCounts() for s in STAGES})
    problems: list[ImportProblem] = field(default_factory=list)
    events_appended: int = 0  # in a dry run: how many would have been appended
    seconds: float = 0.0

    def problem(self, path: Path | str, reason: str, *, stage: str | None = None,
                gen_id: str | None = None, imported: bool = False) -> None:
        self.problems.append(ImportProblem(str(path), reason, stage, gen_id, imported))

    @property
    def generations_found(self) -> int:
        return sum(c.found for c in self.stages.values())


# ----------------------------------------------------------------------------- reading one generation
@dataclass
class LegacyGeneration:
    """One ``gens/<stage>/<gen_id>/`` folder, read and validated (texts may still be missing)."""

    stage: str
    gen_id: str
    folder: Path
    metadata: dict[str, Any]
    raw_metadata: dict[str, Any] | None
    parsed_metadata: dict[str, Any] | None
    prompt: str | None
    raw: str | None
    parsed: str | None
    template_id: str
    model_id: str | None
    parent_gen_id: str | None
    combo_id: str | None
    replicate: int
    generator: str
    cohort_id: str | None
    created_at: str | None
    notes: list[str] = field(default_factory=list)  # damage that still lets it be imported
    # Text files that exist but could not be read, with why: not the same fact as "missing".
    unreadable_texts: dict[str, str] = field(default_factory=dict)


class Unreadable(Exception):
    """A generation folder that cannot be imported at all; the message is the reason."""


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON: SQLite's json functions would reject the stored payload.
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 parses as inf, which the ledger would reject as "malformed JSON" without saying where.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large for a JSON number")
    return value


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; raises ``Unreadable`` with a one-line reason otherwise."""
    try:
        # utf-8-sig: files saved by Windows editors start with a byte order mark, which is not content.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise Unreadable(f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError as exc:
        raise Unreadable(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Unreadable(f"{path.name} holds a JSON {type(value).__name__}, expected an object")
    try:
        # A \ud800-style escape decodes to a lone surrogate, which cannot be stored as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Unreadable(f"{path.name} contains an invalid unicode escape (lone surrogate)") from None
    return value


def _read_optional_text(path: Path, names: set[str], notes: list[str],
                        unreadable: dict[str, str]) -> str | None:
    if path.name not in names:
        return None
    try:
        # Verbatim: newline="" keeps CRLF as written (the text's hash is the file's text); a
        # leading byte order mark is an encoding marker, not content.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError:
        unreadable[path.name] = f"{path.name} is not UTF-8 text"
    except OSError as exc:
        unreadable[path.name] = f"cannot read {path.name}: {exc.strerror or exc}"
    notes.append(f"{unreadable[path.name]} (left out, the rest imported)")
    return None


def _text_field(metadata: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise Unreadable(f"metadata.json field {key!r} is {value!r}, expected a string")
        text = str(value).strip()
        if text:
            return text
    return None


def _replicate(metadata: dict[str, Any]) -> int:
    value = metadata.get("replicate")
    if value is None or value == "":
        return 1  # the previous pipeline wrote no replicate for single-replicate runs
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # pandas writes integer columns that have gaps as floats (1.0)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Unreadable(f"metadata.json field 'replicate' is {value!r}, expected an integer ≥ 1") from None
    if number < 1:
        raise Unreadable(f"metadata.json field 'replicate' is {value!r}, expected an integer ≥ 1")
    return number




def _timestamp(sources: list[tuple[str, dict[str, Any]]], notes: list[str]) -> str | None:
    """The first usable creation time among ``(file name, object)`` sources, as text.

    Strings are kept as written; numbers are Unix times (seconds, or milliseconds when that large),
    as Python and JavaScript pipelines write them. Anything else is noted, never fatal: a timestamp
    is not part of a generation's identity, and the files' time stands in for it.
    """
    for file_name, values in sources:
        for key in ("created_at", "timestamp"):
            value = values.get(key)
            if value is None or value == "":
                continue
            if isinstance(value, str):
                if value.strip():
                    return value.strip()
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                seconds = value / 1000 if 1e12 <= value < 1e14 else value
                if 1e8 <= seconds < 1e11:  # 1973 … 5138: a time, not some other number
                    return iso_utc(datetime.fromtimestamp(seconds, timezone.utc))
            notes.append(f"{file_name} field {key!r} is {value!r}, not a timestamp (the file's time used)")
    return None


def _file_time(*paths: Path) -> str | None:
    for path in paths:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        return iso_utc(datetime.fromtimestamp(mtime, timezone.utc))
    return None


def read_generation(stage: str, folder: Path) -> LegacyGeneration:
    """Read and validate one generation folder. Raises ``Unreadable`` when it cannot be imported.

    Damage that leaves the generation's identity intact (a broken raw_metadata.json, a text file
    that is not UTF-8) is recorded in ``notes`` instead, and the generation is imported without it.
    """
    gen_id = folder.name
    try:
        # One listing instead of a stat per possible file: this loop runs once per generation.
        names = set(os.listdir(folder))
    except OSError as exc:
        raise Unreadable(f"cannot list the folder: {exc.strerror or exc}") from None
    meta_path = folder / "metadata.json"
    if "metadata.json" not in names:
        raise Unreadable("metadata.json is missing")
    metadata = _read_json(meta_path)
    notes: list[str] = []
    unreadable: dict[str, str] = {}
    side: dict[str, dict[str, Any] | None] = {}
    for name in ("raw_metadata", "parsed_metadata"):
        path = folder / f"{name}.json"
        side[name] = None
        if path.name in names:
            try:
                side[name] = _read_json(path)
            except Unreadable as exc:
                notes.append(f"{exc} (left out, the rest imported)")

    declared_id = _text_field(metadata, "gen_id")
    if declared_id is not None and declared_id != gen_id:
        raise Unreadable(f"metadata.json gen_id {declared_id!r} does not match the folder name {gen_id!r}")
    declared_stage = _text_field(metadata, "stage")
    if declared_stage is not None and declared_stage != stage:
        raise Unreadable(f"metadata.json stage {declared_stage!r} does not match the folder gens/{stage}/")
    template_id = _text_field(metadata, "template_id")
    if template_id is None:
        raise Unreadable("metadata.json has no template_id")
    generator = _text_field(metadata, "mode", "generator") or "llm"
    model_id = _text_field(metadata, "llm_model_id", "model_id")
    if model_id is None and generator != "copy":
        raise Unreadable("metadata.json has no llm_model_id (needed unless mode is 'copy')")
    parent = _text_field(metadata, "parent_gen_id")
    combo = _text_field(metadata, "combo_id")
    if stage == "draft" and combo is None:
        raise Unreadable("metadata.json has no combo_id (a draft needs one)")
    if stage in PARENT_STAGE and parent is None:
        kind = "orphan evaluation" if stage == "evaluation" else "orphan essay"
        raise Unreadable(f"{kind}: metadata.json has no parent_gen_id")

    raw_meta = side["raw_metadata"] or {}
    created = (_timestamp([("metadata.json", {"created_at": metadata.get("created_at")}),
                           ("raw_metadata.json", raw_meta)], notes)
               or _file_time(folder / "raw.txt", folder / "parsed.txt", meta_path))
    return LegacyGeneration(
        stage=stage, gen_id=gen_id, folder=folder, metadata=metadata,
        raw_metadata=side["raw_metadata"], parsed_metadata=side["parsed_metadata"],
        prompt=_read_optional_text(folder / "prompt.txt", names, notes, unreadable),
        raw=_read_optional_text(folder / "raw.txt", names, notes, unreadable),
        parsed=_read_optional_text(folder / "parsed.txt", names, notes, unreadable),
        template_id=template_id, model_id=model_id, parent_gen_id=parent, combo_id=combo,
        replicate=_replicate(metadata), generator=generator,
        cohort_id=_text_field(metadata, "origin_cohort_id", "cohort_id"), created_at=created,
        notes=notes, unreadable_texts=unreadable,
    )


def _try_read(stage: str, folder: Path) -> LegacyGeneration | Unreadable:
    try:
        return read_generation(stage, folder)
    except Unreadable as exc:
        return exc


def parse_score(parsed: str, scale: Scale = DEFAULT_SCALE) -> float | int:
    """The score on the last non-empty line of an evaluation's parsed.txt, on the rubric's ``scale``
    (0–9 by default): ``7.0`` from a 0-10 rubric is 7 on 0-10. ValueError if there is none."""
    low, high = scale
    lines = [line.strip() for line in parsed.splitlines() if line.strip()]
    if not lines:
        raise ValueError("parsed.txt is empty, expected a score on its last line")
    match = _SCORE_LINE.match(lines[-1])
    if not match:
        raise ValueError(f"last line of parsed.txt is {lines[-1][:40]!r}, expected a number {low}–{high}")
    value = float(match.group(1))
    if not low <= value <= high:
        raise ValueError(f"score {match.group(1)} on the last line of parsed.txt is not in {low}–{high} "
                         "(the rubric's scale)")
    return int(value) if value.is_integer() else value


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        # Some writers quote every number ("usage": {"prompt_tokens": "812"}): still the number.
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _usage(raw_meta: dict[str, Any]) -> tuple[int | None, int | None, float | None]:
    usage = raw_meta.get("usage") if isinstance(raw_meta.get("usage"), dict) else {}
    prompt = _number(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _number(usage.get("completion_tokens", usage.get("output_tokens")))
    cost = _number(raw_meta.get("cost_usd", usage.get("cost")))
    return (None if prompt is None else int(prompt),
            None if completion is None else int(completion), cost)


def build_event(gen: LegacyGeneration, combo_id: str | None,
                scale: Scale | None = None) -> tuple[ev.GenerationImported, list[str]]:
    """The ``GenerationImported`` event of one generation and the texts it refers to.

    ``scale`` is the rubric's scale, for evaluations (default 0–9); it is recorded with the score.
    """
    scale = scale or DEFAULT_SCALE
    texts = [t for t in (gen.prompt, gen.raw, gen.parsed) if t is not None]
    status, error, score = "completed", None, None
    if gen.parsed is None:
        missing = [n for n, t in (("prompt.txt", gen.prompt), ("raw.txt", gen.raw))
                   if t is None and n not in gen.unreadable_texts]
        error = gen.unreadable_texts.get("parsed.txt") or (
            "parsed.txt missing" + (f" (also {', '.join(missing)})" if missing else ""))
        status = "failed"
    elif gen.raw is None and gen.generator != "copy":
        why = gen.unreadable_texts.get("raw.txt", "raw.txt missing")
        status, error = "failed", f"parsed.txt present but {why}"
    elif gen.stage == "evaluation":
        try:
            score = parse_score(gen.parsed, scale)
        except ValueError as exc:
            status, error = "failed", str(exc)
    raw_meta = gen.raw_metadata or {}
    prompt_tokens, completion_tokens, cost = _usage(raw_meta)
    finish = raw_meta.get("finish_reason")
    parser = (gen.parsed_metadata or {}).get("parser_name")
    parser = LEGACY_PARSER_ALIASES.get(parser, parser) if isinstance(parser, str) and parser else None
    event = ev.GenerationImported(
        gen_id=gen.gen_id, stage=gen.stage, parent_gen_id=gen.parent_gen_id, combo_id=combo_id,
        template_id=gen.template_id, model_id=gen.model_id, replicate=gen.replicate, generator=gen.generator,
        parser=parser, cohort_id=gen.cohort_id, status=status,
        prompt_hash=text_hash(gen.prompt) if gen.prompt is not None else None,
        raw_hash=text_hash(gen.raw) if gen.raw is not None else None,
        parsed_hash=text_hash(gen.parsed) if gen.parsed is not None else None,
        score=score, finish_reason=finish if isinstance(finish, str) else None, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, cost_usd=cost, latency_s=_number(raw_meta.get("duration_s")),
        error=error, created_at=gen.created_at, source=str(gen.folder),
        metadata={"metadata": gen.metadata, "raw_metadata": gen.raw_metadata,
                  "parsed_metadata": gen.parsed_metadata},
        scale=list(scale) if gen.stage == "evaluation" else None)
    return event, texts


# ----------------------------------------------------------------------------- appending in batches
# What the database (or the UTF-8 encoding on the way to it) may throw at one bad event.
_REJECTED = (sqlite3.Error, LedgerIntegrityError, UnicodeEncodeError)
# Messages that blame the database or the disk, not the event: retrying one by one cannot help.
_ENVIRONMENT = ("locked", "busy", "disk", "full", "readonly", "read-only", "i/o", "unable to open")


def _check_environment(exc: BaseException, ledger: Ledger) -> None:
    """Raise a one-line ``ImportFailed`` when ``exc`` is about the ledger file, not one event."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and \
            any(word in message.lower() for word in _ENVIRONMENT):
        raise ImportFailed(f"cannot write to ledger {str(ledger.path)!r}: {message}; what was appended "
                           "so far stays, and re-running the import continues from there") from None


class _Writer:
    """Collects events (with their texts) and appends them in batches; never appends in a dry run.

    A batch that the database rejects is retried one unit at a time, so one bad generation can
    never take its whole batch down with it.
    """

    def __init__(self, ledger: Ledger, report: ImportReport, batch_size: int,
                 on_rejected: Callable[[list[NewEvent], str], None],
                 on_conflict: Callable[[list[NewEvent]], list[NewEvent]]) -> None:
        self.ledger = ledger
        self.report = report
        self.batch_size = max(1, batch_size)
        self.on_rejected = on_rejected
        self.on_conflict = on_conflict
        self.units: list[tuple[list[NewEvent], list[str]]] = []
        self.pending = 0

    def add(self, events: list[NewEvent], texts: Iterable[str] = ()) -> None:
        self.units.append((events, list(texts)))
        self.pending += len(events)
        if self.pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        units, self.units, self.pending = self.units, [], 0
        if not units:
            return
        if self.report.dry_run:
            # Counted as if appended, so a dry run prints the same summary as the real run.
            self.report.events_appended += sum(len(events) for events, _ in units)
            return
        try:
            self._append(units)
        except ConcurrencyConflict:
            # Another writer created some of these streams since we looked: drop those and retry.
            kept = []
            for events, texts in units:
                remaining = self.on_conflict(events)
                if remaining:
                    kept.append((remaining, texts))
            if kept:
                self._append_one_by_one(kept)
        except _REJECTED as exc:
            _check_environment(exc, self.ledger)
            self._append_one_by_one(units)

    def _append(self, units: list[tuple[list[NewEvent], list[str]]]) -> None:
        events = [e for unit in units for e in unit[0]]
        texts = [t for unit in units for t in unit[1]]
        self.ledger.append(events, texts)
        self.report.events_appended += len(events)

    def _append_one_by_one(self, units: list[tuple[list[NewEvent], list[str]]]) -> None:
        for events, texts in units:
            try:
                self._append([(events, texts)])
            except ConcurrencyConflict:
                remaining = self.on_conflict(events)
                if remaining:
                    self._append([(remaining, texts)])
            except _REJECTED as exc:
                _check_environment(exc, self.ledger)
                self.on_rejected(events, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# ----------------------------------------------------------------------------- the import
def check_root(root: Path) -> Path:
    """``root`` resolved, or ``ImportFailed`` when it is not a usable data root."""
    if not root.exists():
        raise ImportFailed(f"data root {str(root)!r} does not exist")
    if not root.is_dir():
        raise ImportFailed(f"data root {str(root)!r} is not a directory")
    if not (root / "gens").is_dir():
        raise ImportFailed(f"data root {str(root)!r} has no gens/ folder (expected gens/<stage>/<gen_id>/)")
    return root.resolve()


class _Importer:
    """One run of ``import_dagster``: the ledger's state as read up front, plus what we add."""

    def __init__(self, ledger: Ledger, root: Path, report: ImportReport, batch_size: int) -> None:
        self.ledger = ledger
        self.root = root
        self.report = report
        # gen_id -> (stage, combo_id) for every generation in the ledger or accepted in this run.
        self.known: dict[str, tuple[str, str | None]] = {
            gen_id: (stage, combo) for gen_id, stage, combo in
            ledger.query("SELECT gen_id, stage, combo_id FROM gen_state")}
        self.in_ledger = set(self.known)
        # Generations imported before without their results (say, mid-run in Dagster): a later
        # root that has them completes them with a second GenerationImported.
        self.incomplete_before: set[str] = {
            gen_id for (gen_id,) in ledger.query(
                "SELECT gen_id FROM gen_state WHERE imported = 1 AND status = 'failed'")}
        self.rereading: set[str] = set()
        self.members: set[tuple[str, str]] = set()
        self.writer = _Writer(ledger, report, batch_size, self._rejected, self._drop_present)
        self.unreadable: set[str] = set()  # gen_ids found on disk but not imported
        # Rubric scales by evaluation template id: the root's catalog, else what the ledger's
        # catalog snapshots record (later ones win).
        self.scales: dict[str, Scale] = {}
        for event in ledger.events(type=ev.CATALOG_IMPORTED):
            for t in event.payload.get("templates", []):
                if t.get("stage") == "evaluation":
                    self.scales[t["id"]] = tuple(t.get("scale") or DEFAULT_SCALE)  # type: ignore[assignment]

    # -- callbacks of the writer
    def _drop_present(self, events: list[NewEvent]) -> list[NewEvent]:
        remaining = []
        for e in events:
            if e.expected_version is not None and self.ledger.stream_version(e.stream) != e.expected_version:
                if e.type == ev.GENERATION_IMPORTED:
                    self._recount(e.payload, "skipped")
                continue
            remaining.append(e)
        return remaining

    def _rejected(self, events: list[NewEvent], reason: str) -> None:
        for e in events:
            if e.type == ev.GENERATION_IMPORTED:
                self._recount(e.payload, "unreadable")
                self.known.pop(e.payload["gen_id"], None)  # its children must not count on it
                self.unreadable.add(e.payload["gen_id"])
                self.report.problem(e.payload["source"], f"rejected by the ledger: {reason}",
                                    stage=e.payload["stage"], gen_id=e.payload["gen_id"])
            else:
                self.report.problem(e.stream, f"{e.type} rejected by the ledger: {reason}")

    def _recount(self, payload: dict[str, Any], to: str) -> None:
        counts = self.report.stages[payload["stage"]]
        if payload["status"] == "completed":
            counts.imported -= 1
        else:
            counts.incomplete -= 1
        setattr(counts, to, getattr(counts, to) + 1)

    # -- parts
    def import_catalog(self) -> None:
        raw = self.root / "1_raw"
        if not raw.is_dir():
            self.report.catalog = "absent (no 1_raw/ folder)"
            return
        try:
            catalog = load_catalog(raw)
            payload, texts = catalog.snapshot()
            self.scales.update({tid: t.score_scale or DEFAULT_SCALE
                                for tid, t in catalog.templates.get("evaluation", {}).items()})
        except (DaydreamError, OSError, UnicodeDecodeError, ValueError) as exc:
            # A damaged catalog must not stop the generations from being imported.
            self.report.problem(raw, f"catalog not imported: {exc}")
            self.report.catalog = "not imported (damaged)"
            return
        self.report.catalog_hash = catalog.catalog_hash
        if self.ledger.stream_version(ev.catalog_stream(catalog.catalog_hash)) > 0:
            self.report.catalog = f"already present ({catalog.catalog_hash[:16]})"
            return
        self.report.catalog = f"imported ({catalog.catalog_hash[:16]})"
        self.writer.add([ev.CatalogImported.from_payload(payload).new(expected_version=0)], texts)

    def import_combos(self) -> None:
        path = self.root / "combo_mappings.csv"
        if not path.is_file():
            return
        combos: dict[str, dict[str, Any]] = {}
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
                reader = csv.DictReader(handle)
                needed = {"combo_id", "concept_id", "description_level"}
                missing = needed - set(reader.fieldnames or ())
                if missing:
                    self.report.problem(path, f"combos not imported: columns {sorted(missing)} missing "
                                              f"(expected combo_id, concept_id, description_level, k_max)")
                    return
                for line, row in enumerate(reader, start=2):
                    combo, concept = (row["combo_id"] or "").strip(), (row["concept_id"] or "").strip()
                    level = (row["description_level"] or "").strip()
                    if not combo or not concept:
                        self.report.problem(path, f"line {line}: empty combo_id or concept_id (row skipped)")
                        continue
                    entry = combos.setdefault(combo, {"concepts": set(), "levels": set()})
                    entry["concepts"].add(concept)
                    entry["levels"].add(level)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            self.report.problem(path, f"combos not imported: cannot read the file ({exc})")
            return
        present = {row[0] for row in self.ledger.query("SELECT combo_id FROM combos")}
        for combo, entry in combos.items():
            if combo in present:
                self.report.combos_present += 1
                continue
            if len(entry["levels"]) != 1:
                self.report.problem(path, f"combo {combo}: rows disagree on description_level "
                                          f"{sorted(entry['levels'])}, expected one level (not imported)")
                continue
            defined = ev.ComboDefined(combo_id=combo, concept_ids=sorted(entry["concepts"]),
                                      level=next(iter(entry["levels"])) or None, k=len(entry["concepts"]))
            self.writer.add([defined.new(expected_version=0)])
            self.report.combos_defined += 1

    def stage_folders(self) -> list[tuple[str, list[Path]]]:
        gens = self.root / "gens"
        found = []
        for stage in STAGES:
            folder = gens / stage
            found.append((stage, sorted(p for p in folder.iterdir() if not p.name.startswith("."))
                          if folder.is_dir() else []))
        for other in sorted(p for p in gens.iterdir() if p.name not in STAGES and not p.name.startswith(".")):
            self.report.problem(other, f"unknown stage folder gens/{other.name}/ (expected "
                                       f"{', '.join(STAGES)}); not imported")
        return found

    def import_stage(self, stage: str, folders: list[Path]) -> None:
        counts = self.report.stages[stage]
        to_read: list[Path] = []
        for folder in folders:
            gen_id = folder.name
            if (gen_id in self.incomplete_before and self.known[gen_id][0] == stage
                    and gen_id not in self.rereading and folder.is_dir()):
                self.rereading.add(gen_id)  # imported before without results: look again
                to_read.append(folder)
            elif gen_id in self.in_ledger:
                counts.skipped += 1  # never re-read: nothing already in the ledger changes
            elif gen_id in self.known:
                counts.unreadable += 1
                self.report.problem(folder, f"gen_id also found under gens/{self.known[gen_id][0]}/ "
                                            "(imported from there)", stage=stage, gen_id=gen_id)
            elif not folder.is_dir():
                counts.unreadable += 1
                self.report.problem(folder, "not a folder (expected gens/<stage>/<gen_id>/)",
                                    stage=stage, gen_id=gen_id)
            else:
                to_read.append(folder)
        # Reading is I/O: threads overlap the file reads; results come back in folder order, and
        # lineage is checked one by one afterwards so the outcome does not depend on timing.
        # Chunks bound memory: only one chunk of texts waits in memory beside the writer's batch.
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            for start in range(0, len(to_read), _READ_CHUNK):
                chunk = to_read[start:start + _READ_CHUNK]
                for folder, outcome in zip(chunk, pool.map(lambda f: _try_read(stage, f), chunk)):
                    self._accept(stage, folder, outcome)

    def _accept(self, stage: str, folder: Path, outcome: LegacyGeneration | Unreadable) -> None:
        counts = self.report.stages[stage]
        gen_id = folder.name
        try:
            if isinstance(outcome, Unreadable):
                raise outcome
            gen = outcome
            combo = self._lineage(gen)
        except Unreadable as exc:
            counts.unreadable += 1
            self.unreadable.add(gen_id)
            self.report.problem(folder, str(exc), stage=stage, gen_id=gen_id)
            return
        imported, texts = build_event(gen, combo, self._scale(gen))
        if gen_id in self.incomplete_before:
            # Imported before without its results. Only a now-complete generation is recorded
            # again (a new event on its stream; the old one stays); otherwise nothing changes.
            if imported.status != "completed":
                counts.skipped += 1
                return
            counts.imported += 1
            completed = imported.but(completes_import=True)
            self.writer.add([completed.new(expected_version=self.ledger.stream_version(completed.stream))], texts)
            return
        if imported.status == "completed":
            counts.imported += 1
        else:
            counts.incomplete += 1
        damage = list(gen.notes)
        if imported.error and not imported.error.startswith("parsed.txt missing"):
            damage.append(imported.error + " (imported with status failed)")
        for note in damage:
            self.report.problem(folder, note, stage=stage, gen_id=gen_id, imported=True)
        self.known[gen_id] = (stage, combo)
        if gen.cohort_id:
            self.members.add((gen.cohort_id, gen_id))
        self.writer.add([imported.new(expected_version=0)], texts)

    def _scale(self, gen: LegacyGeneration) -> Scale | None:
        """The scale of an evaluation's rubric (0–9 for a rubric in no catalog, as it always was)."""
        if gen.stage != "evaluation":
            return None
        return self.scales.get(gen.template_id, DEFAULT_SCALE)

    def _lineage(self, gen: LegacyGeneration) -> str | None:
        """Check the parent and return the combo (carried down from the parent when absent)."""
        if gen.stage not in PARENT_STAGE:
            return gen.combo_id
        want = PARENT_STAGE[gen.stage]
        parent = self.known.get(gen.parent_gen_id or "")
        if parent is None:
            kind = "orphan evaluation" if gen.stage == "evaluation" else "missing parent"
            where = ("was not imported (see its own problem)" if gen.parent_gen_id in self.unreadable
                     else "is not in the data root nor in the ledger")
            raise Unreadable(f"{kind}: parent {want} {gen.parent_gen_id} {where}")
        if parent[0] != want:
            raise Unreadable(f"parent {gen.parent_gen_id} has stage {parent[0]!r}, expected {want!r}")
        return gen.combo_id or parent[1]

    def import_cohorts(self) -> None:
        folder = self.root / "cohorts"
        if not folder.is_dir():
            return
        cohort_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not cohort_dirs:
            return
        ids = [p.name for p in cohort_dirs]
        marks = ",".join("?" * len(ids))
        self.members |= set(self.ledger.query(
            f"SELECT cohort_id, gen_id FROM cohort_members WHERE cohort_id IN ({marks})", ids))
        specs: dict[str, list[str]] = {}
        for stream, spec_hash in self.ledger.query(
                "SELECT stream, json_extract(payload, '$.spec_hash') FROM events WHERE type = ?",
                (ev.SPEC_COMPILED,)):
            specs.setdefault(stream, []).append(spec_hash)
        for cohort_dir in cohort_dirs:
            self._import_cohort(cohort_dir, specs.get(ev.cohort_stream(cohort_dir.name), []))

    def _import_cohort(self, cohort_dir: Path, recorded: list[str]) -> None:
        cohort_id = cohort_dir.name
        membership = cohort_dir / "membership.csv"
        rows: list[dict[str, str]] = []
        if membership.is_file():
            try:
                with membership.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
                    reader = csv.DictReader(handle)
                    if not {"stage", "gen_id"} <= set(reader.fieldnames or ()):
                        self.report.problem(membership, "membership not imported: expected columns stage,gen_id")
                    else:
                        rows = list(reader)
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                self.report.problem(membership, f"membership not imported: cannot read the file ({exc})")
        spec_path = cohort_dir / "spec" / "config.yaml"
        if spec_path.is_file():
            try:
                spec_text = spec_path.read_text(encoding="utf-8")
                load_yaml(spec_text)  # aliases that would explode it are refused, as for a spec we plan
            except (OSError, UnicodeDecodeError, yaml.YAMLError, YAMLTooLarge) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.report.problem(spec_path, f"spec not recorded: {first}")
            else:
                spec_hash = text_hash(spec_text)
                if spec_hash in recorded:
                    self.report.specs_present += 1
                else:
                    compiled = ev.SpecCompiled(cohort_id=cohort_id, spec_hash=spec_hash, spec_path=str(spec_path),
                                               catalog_hash=self.report.catalog_hash, rows=len(rows),
                                               spec_version=len(recorded) + 1)
                    self.writer.add([compiled.new()], [spec_text])
                    recorded.append(spec_hash)
                    self.report.specs_recorded += 1
        for line, row in enumerate(rows, start=2):
            gen_id, stage = (row.get("gen_id") or "").strip(), (row.get("stage") or "").strip()
            known = self.known.get(gen_id)
            if known is None:
                why = ("was not imported (see its own problem)" if gen_id in self.unreadable
                       else "is not in the data root nor in the ledger")
                self.report.problem(membership, f"line {line}: {stage or '?'} {gen_id or '(empty gen_id)'} "
                                                f"{why}; not linked")
                continue
            if stage and stage != known[0]:
                self.report.problem(membership, f"line {line}: {gen_id} is listed as stage {stage!r} but "
                                                f"its stage is {known[0]!r} (linked as {known[0]})")
            if (cohort_id, gen_id) in self.members:
                self.report.links_present += 1
                continue
            self.members.add((cohort_id, gen_id))
            self.writer.add([ev.GenerationLinked(cohort_id=cohort_id, gen_id=gen_id, stage=known[0]).new()])
            self.report.links_added += 1


def import_dagster(ledger: Ledger, root: str | Path, *, dry_run: bool = False,
                   batch_size: int = DEFAULT_BATCH) -> ImportReport:
    """Import the Dagster data root at ``root`` into ``ledger`` and say what happened.

    Order: catalog, combos, drafts, essays, evaluations (parents before children), cohorts. Raises
    ``ImportFailed`` only when the root as a whole is unusable; everything else is reported in
    ``ImportReport.problems`` and the sound rest is imported. With ``dry_run`` nothing is appended.
    """
    started = time.perf_counter()
    path = check_root(Path(root))
    report = ImportReport(root=path, dry_run=dry_run)
    run = _Importer(ledger, path, report, batch_size)
    run.import_catalog()
    run.import_combos()
    run.writer.flush()
    for stage, folders in run.stage_folders():
        run.import_stage(stage, folders)
        # Children check their parents against ``known``; flushing per stage keeps a rejected
        # parent's failure visible before its children are appended.
        run.writer.flush()
    run.import_cohorts()
    run.writer.flush()
    report.seconds = time.perf_counter() - started
    return report
