"""Catalogs: the concepts, prompt templates and models a cohort spec draws on.

``load_catalog`` reads either our own layout (``specs/catalog``: YAML files plus Jinja2 template
files, see its README) or the previous pipeline's ``1_raw`` layout (CSV metadata plus text files).
``Catalog.snapshot`` turns a catalog into the ``CatalogImported`` payload recorded in the ledger, and
``catalog_from_ledger`` rebuilds the catalog from that event alone, so a ledger is self-contained.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from daydream.errors import CatalogError, UsageError
from daydream.ledger.events import CatalogImported
from daydream.ledger.store import canonical_json, text_hash
from daydream.design.scales import DEFAULT_SCALE, Scale, coerce_scale, infer_scale, parse_scale_option, scale_label
from daydream.design.yaml_loading import YAMLTooLarge, load_yaml

STAGES = ("draft", "essay", "evaluation")
# Stages whose templates are rubrics: their answers are scores on the template's scale.
SCORED_STAGES = ("evaluation",)
LEVELS = ("sentence", "paragraph", "article")
# Fallback chain for a concept description: start at the requested level, then go down.
_FALLBACK = ("article", "paragraph", "sentence")
GENERATORS = ("llm", "copy")
PROVIDERS = ("openai", "offline")

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_API_KEY_ENV = "OPENROUTER_API_KEY"

# Parser names of the previous pipeline, mapped to ours. A blank parser meant "use the text as is"
# for drafts and essays; evaluations always read a "SCORE: X" last line.
LEGACY_PARSER_ALIASES = {
    "in_last_line": "score",
}
DEFAULT_PARSERS = {"draft": "identity", "essay": "identity", "evaluation": "score"}


def repo_catalog_dir() -> Path:
    """The starter catalog: the repository's ``specs/catalog``, or a copy packaged in a wheel."""
    here = Path(__file__).resolve().parents[1]  # the daydream package
    for candidate in (here.parent / "specs" / "catalog", here / "_specs" / "catalog"):
        if candidate.is_dir():
            return candidate
    return here.parent / "specs" / "catalog"


@dataclass(frozen=True)
class Concept:
    """A concept with descriptions at one or more levels (sentence, paragraph, article)."""

    id: str
    name: str
    descriptions: dict[str, str]

    def content(self, level: str) -> str:
        """The description at ``level``, else the next shorter one, else the concept's name."""
        start = _FALLBACK.index(level) if level in _FALLBACK else 0
        for candidate in _FALLBACK[start:]:
            text = self.descriptions.get(candidate)
            if text:
                return text
        return self.name


@dataclass(frozen=True)
class Template:
    """A prompt template of one stage; copy-mode templates have no text.

    ``scale`` is the (min, max) of a rubric's scores (evaluation templates only; None means the
    default 0-9).
    """

    stage: str
    id: str
    text: str | None
    parser: str | None
    generator: str
    description: str = ""
    path: str | None = None
    scale: Scale | None = None

    @property
    def score_scale(self) -> Scale | None:
        """The scale its answers are scored on: the declared one, 0-9 by default; None if unscored."""
        if self.stage not in SCORED_STAGES:
            return None
        return self.scale or DEFAULT_SCALE

    @property
    def text_hash(self) -> str | None:
        """sha256 of the template text, the key of the text in the ledger (None for copy templates)."""
        return text_hash(self.text) if self.text is not None else None

    @property
    def hash(self) -> str | None:
        """The template's identity: its text and, for rubrics, its scale (None for copy templates).

        It is the text's sha256 when the scale is the default (so templates without scores, and
        rubrics on 0-9, keep the hash they always had), otherwise a sha256 of the text's hash and
        the scale: changing a rubric's scale changes its identity as editing its text does.
        """
        digest = self.text_hash
        scale = self.score_scale
        if digest is None or scale is None or scale == DEFAULT_SCALE:
            return digest
        return hashlib.sha256(f"{digest}\nscale {scale[0]} {scale[1]}".encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Model:
    """A model as the runner calls it: provider, endpoint, limits and prices (USD per 1M tokens).

    Its *identity* (``IDENTITY_FIELDS``: what is called and with which output-changing parameters)
    is fixed for good by the first plan that uses the id in a ledger; its *settings* (``SETTINGS_FIELDS``:
    key variable, limits, prices) may change later, and runs use the newest recorded.
    """

    id: str
    provider: str
    model: str
    base_url: str | None
    api_key_env: str | None
    concurrency: int
    rpm: int | None
    price_in: float | None
    price_out: float | None
    release_date: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stages: dict[str, dict] = field(default_factory=dict)
    # "unknown": the catalog says on purpose that it does not know the prices (price_in/price_out
    # are then absent). Runs accept such a model, but --budget refuses it without --allow-unpriced.
    price: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, exactly as recorded in the catalog snapshot.

        ``price`` appears only when set, so catalogs written before it existed keep their hashes.
        """
        found = asdict(self)
        if found.get("price") is None:
            del found["price"]
        return found

    def identity(self) -> dict[str, Any]:
        """What makes two definitions the same model: endpoint, name and output-changing parameters."""
        return model_identity(self.as_dict())

    @property
    def identity_hash(self) -> str:
        """sha256 of the canonical JSON of ``identity()``."""
        return identity_hash(self.identity())


# What a model id *is*: the provider, the model name, the endpoint, and every parameter daydream
# sends that changes the answer (temperature and max_tokens, per stage too). Changing one of them
# under an id that has planned work is refused: give the new definition a new id.
IDENTITY_FIELDS = ("provider", "model", "base_url", "temperature", "max_tokens", "stages")
# How a model is used, not what it answers: may change from one plan to the next (recorded).
SETTINGS_FIELDS = ("api_key_env", "concurrency", "rpm", "price_in", "price_out", "release_date", "price")
# The only value of ``price``: prices deliberately left unknown (a local or new model).
PRICE_UNKNOWN = "unknown"
MODEL_FIELDS = ("id", *IDENTITY_FIELDS, *SETTINGS_FIELDS)
STAGE_PARAMS = ("temperature", "max_tokens")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def model_identity(definition: dict[str, Any]) -> dict[str, Any]:
    """The identity part of a model definition (a ``Model.as_dict()`` or snapshot entry)."""
    found = {k: definition.get(k) for k in IDENTITY_FIELDS}
    found["stages"] = {str(stage): {k: v for k, v in sorted((params or {}).items())}
                       for stage, params in sorted((found["stages"] or {}).items()) if params}
    return found


def identity_hash(identity: dict[str, Any]) -> str:
    """sha256 of a model identity's canonical JSON."""
    return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()


def model_settings(definition: dict[str, Any]) -> dict[str, Any]:
    """The settings part of a model definition (``price`` only when set, as in ``Model.as_dict``)."""
    return {k: definition.get(k) for k in SETTINGS_FIELDS if k != "price" or definition.get(k) is not None}


def price_status(definition: dict[str, Any]) -> str:
    """``known`` (price_in and price_out given), ``unknown`` (``price: unknown``) or ``missing``."""
    if definition.get("price_in") is not None and definition.get("price_out") is not None:
        return "known"
    return "unknown" if definition.get("price") == PRICE_UNKNOWN else "missing"


def describe_identity(identity: dict[str, Any]) -> str:
    """A model identity on one line: ``provider=openai model=x base_url=… temperature=0.2``."""
    parts = []
    for key in IDENTITY_FIELDS:
        value = identity.get(key)
        if value in (None, {}, ""):
            continue
        parts.append(f"{key}={canonical_json(value) if isinstance(value, dict) else value}")
    return " ".join(parts)


@dataclass
class Catalog:
    """Concepts, templates (stage -> id -> Template), models and known combos of one catalog."""

    concepts: dict[str, Concept]
    templates: dict[str, dict[str, Template]]
    models: dict[str, Model]
    source: str
    combos: dict[str, dict] = field(default_factory=dict)

    def template(self, stage: str, id: str) -> Template:
        """The template ``id`` of ``stage``; CatalogError naming it when absent."""
        try:
            return self.templates[stage][id]
        except KeyError:
            known = ", ".join(sorted(self.templates.get(stage, {}))) or "none"
            raise CatalogError(
                f"catalog {self.source}: unknown {stage} template {id!r} (known: {known})") from None

    def model(self, id: str) -> Model:
        """The model ``id``; CatalogError naming it when absent."""
        try:
            return self.models[id]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise CatalogError(f"catalog {self.source}: unknown model {id!r} (known: {known})") from None

    def _payload(self) -> tuple[dict[str, Any], list[str]]:
        texts: list[str] = []
        concepts = []
        for c in sorted(self.concepts.values(), key=lambda c: c.id):
            levels = {}
            for level, text in sorted(c.descriptions.items()):
                levels[level] = text_hash(text)
                texts.append(text)
            concepts.append({"id": c.id, "name": c.name, "levels": levels})
        templates = []
        for stage in sorted(self.templates):
            for t in sorted(self.templates[stage].values(), key=lambda t: t.id):
                entry = {"stage": t.stage, "id": t.id, "hash": t.hash, "parser": t.parser,
                         "generator": t.generator, "description": t.description}
                if t.score_scale is not None:
                    entry["scale"] = list(t.score_scale)
                if t.hash != t.text_hash:  # the identity is not the text's key: record both
                    entry["text_hash"] = t.text_hash
                templates.append(entry)
                if t.text is not None:
                    texts.append(t.text)
        models = [m.as_dict() for m in sorted(self.models.values(), key=lambda m: m.id)]
        payload: dict[str, Any] = {"concepts": concepts, "templates": templates, "models": models}
        if self.combos:
            payload["combos"] = [{"combo_id": cid, **self.combos[cid]} for cid in sorted(self.combos)]
        return payload, texts

    @property
    def catalog_hash(self) -> str:
        """sha256 of the canonical JSON of the snapshot content (the source path is not part of it)."""
        payload, _texts = self._payload()
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def snapshot(self) -> tuple[dict[str, Any], list[str]]:
        """The ``CatalogImported`` payload and the texts (templates, descriptions) it refers to."""
        payload, texts = self._payload()
        digest = hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
        return {"catalog_hash": digest, "source": self.source, **payload}, texts

    def snapshot_event(self) -> tuple[CatalogImported, list[str]]:
        """The ``CatalogImported`` event that records this catalog, and the texts it refers to."""
        payload, texts = self.snapshot()
        return CatalogImported.from_payload(payload), texts


# ----------------------------------------------------------------------------- model defaults
def is_openrouter(base_url: str | None) -> bool:
    """Whether ``base_url`` is OpenRouter's (the only endpoint the default key variable is for)."""
    if not base_url:
        return False
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host == "openrouter.ai" or host.endswith(".openrouter.ai"))


def _base_url(value: Any, model_id: str, where: str) -> str:
    """A checked ``base_url`` without a trailing slash.

    A URL with credentials or a query string would put a secret into every snapshot, event, error
    and Datasette page, so it is refused, and the message never repeats the URL.
    """
    url = str(value).strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise CatalogError(f"{where}: model {model_id!r}: base_url is not a valid URL (not shown, in case it "
                           "holds a secret); expected e.g. http://localhost:11434/v1") from None
    if "@" in parts.netloc:
        raise CatalogError(f"{where}: model {model_id!r}: base_url holds credentials (user:password@host); "
                           "refused so that they are not recorded (the URL is not shown): put the key in an "
                           "environment variable and name it with api_key_env")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise CatalogError(f"{where}: model {model_id!r}: base_url has a query string or fragment; refused so "
                           "that no key in it is recorded (the URL is not shown): expected scheme://host[:port]/path, "
                           "with the key in an environment variable named by api_key_env")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CatalogError(f"{where}: model {model_id!r}: base_url {url!r} is not an http(s) URL; expected e.g. "
                           "https://openrouter.ai/api/v1 or http://localhost:11434/v1")
    return url.rstrip("/")


def _api_key_env(value: Any, base_url: str | None, provider: str, model_id: str, where: str) -> str | None:
    """The environment variable holding the model's key, or None for no key.

    Omitted: ``$OPENROUTER_API_KEY`` for OpenRouter's endpoint, and no key for any other (a local
    or third-party server must not receive the OpenRouter key). ``none`` says "no key" explicitly.
    """
    if value is None or str(value).strip() == "":
        return DEFAULT_API_KEY_ENV if provider == "openai" and is_openrouter(base_url) else None
    name = str(value).strip()
    if name.lower() == "none":
        return None
    if not _ENV_NAME.fullmatch(name):
        raise CatalogError(f"{where}: model {model_id!r}: api_key_env must be the *name* of an environment "
                           "variable (letters, digits and _; e.g. OPENROUTER_API_KEY) or none; the value given "
                           "is not shown, in case it is the key itself")
    return name


def _stage_params(stages: Any, model_id: str, where: str) -> dict[str, dict]:
    if not isinstance(stages, dict) or any(not isinstance(v, dict) for v in stages.values()):
        raise CatalogError(f"{where}: model {model_id!r}: 'stages' must map a stage to settings")
    out: dict[str, dict] = {}
    for stage, params in stages.items():
        unknown = sorted(str(k) for k in params if k not in STAGE_PARAMS)
        if unknown:
            raise CatalogError(f"{where}: model {model_id!r}: stages.{stage} has unknown setting(s) "
                               f"{', '.join(repr(u) for u in unknown)}; expected {' or '.join(STAGE_PARAMS)}")
        try:
            out[str(stage)] = {k: (float(v) if k == "temperature" else int(v)) for k, v in params.items()
                               if v not in (None, "")}
        except (TypeError, ValueError):
            raise CatalogError(f"{where}: model {model_id!r}: stages.{stage} has a non-numeric setting: "
                               f"{params!r}") from None
        if out[str(stage)].get("max_tokens", 1) < 1:
            raise CatalogError(f"{where}: model {model_id!r}: stages.{stage}.max_tokens must be >= 1")
    return out


def make_model(raw: dict[str, Any], where: str) -> Model:
    """Build a Model from a mapping, applying the provider, key and free-tier defaults."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping with id, provider, model; got {raw!r}")
    model_id = str(raw.get("id") or "").strip()
    if not model_id:
        raise CatalogError(f"{where}: model entry without an 'id': {raw!r}")
    # An unknown key (top_p, say) would be silently ignored: the user would believe it applies.
    unknown = sorted(str(k) for k in raw if k not in MODEL_FIELDS)
    if unknown:
        raise CatalogError(f"{where}: model {model_id!r} has unknown field(s) {', '.join(repr(u) for u in unknown)}; "
                           f"known: {', '.join(MODEL_FIELDS)}")
    provider = str(raw.get("provider") or "openai").strip()
    if provider not in PROVIDERS:
        raise CatalogError(f"{where}: model {model_id!r} has provider {provider!r}; "
                           f"expected one of {', '.join(PROVIDERS)}")
    name = str(raw.get("model") or (model_id if provider == "offline" else "")).strip()
    if not name:
        raise CatalogError(f"{where}: model {model_id!r} lacks 'model' (the provider's model name)")
    free = name.endswith(":free")
    base_url = raw.get("base_url")
    base_url = _base_url(base_url, model_id, where) if base_url not in (None, "") else None
    if provider == "openai" and base_url is None:
        base_url = DEFAULT_BASE_URL
    api_key_env = _api_key_env(raw.get("api_key_env"), base_url, provider, model_id, where)
    concurrency = raw.get("concurrency", 1 if free else 10)
    rpm = raw.get("rpm", 20 if free else None)
    stages = _stage_params(raw.get("stages") or {}, model_id, where)
    price = _price(raw, model_id, where)
    try:
        model = Model(
            id=model_id, provider=provider, model=name, base_url=base_url, api_key_env=api_key_env,
            concurrency=int(concurrency), rpm=None if rpm in (None, "") else int(rpm),
            price_in=_opt_float(raw.get("price_in")), price_out=_opt_float(raw.get("price_out")),
            release_date=None if raw.get("release_date") in (None, "") else str(raw["release_date"]),
            temperature=_opt_float(raw.get("temperature")),
            max_tokens=None if raw.get("max_tokens") in (None, "") else int(raw["max_tokens"]),
            stages=stages, price=price,
        )
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: model {model_id!r} has a non-numeric limit or price: {exc}") from None
    # A zero limit would stall the runner forever, a negative price would hide spend from --budget.
    for key in ("concurrency", "rpm", "max_tokens"):
        value = getattr(model, key)
        if value is not None and value < 1:
            raise CatalogError(f"{where}: model {model_id!r} has {key} {value}; expected an integer >= 1")
    for key in ("price_in", "price_out"):
        value = getattr(model, key)
        if value is not None and value < 0:
            raise CatalogError(f"{where}: model {model_id!r} has {key} {value}; expected a number >= 0")
    return model


def _price(raw: dict[str, Any], model_id: str, where: str) -> str | None:
    """``price: unknown`` checked: the only value, and never beside price_in / price_out."""
    value = raw.get("price")
    if value is None:
        return None
    if str(value).strip().lower() != PRICE_UNKNOWN:
        raise CatalogError(f"{where}: model {model_id!r} has price {value!r}; the only value is "
                           f"'{PRICE_UNKNOWN}' (give known prices as price_in and price_out, USD per 1M tokens)")
    given = [k for k in ("price_in", "price_out") if raw.get(k) not in (None, "")]
    if given:
        raise CatalogError(f"{where}: model {model_id!r} has 'price: {PRICE_UNKNOWN}' and {' and '.join(given)}; "
                           "give either the prices or 'price: unknown', not both")
    return PRICE_UNKNOWN


def _opt_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


# ----------------------------------------------------------------------------- loading
def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a catalog folder: ours (``concepts.yaml`` …) or the previous pipeline's ``1_raw``.

    ``None`` loads the repository's ``specs/catalog``. A data root that contains ``1_raw`` is
    accepted as well.
    """
    root = Path(path) if path is not None else repo_catalog_dir()
    if not root.is_dir():
        raise CatalogError(f"catalog folder {str(root)!r} does not exist")
    if (root / "concepts.yaml").is_file() or (root / "templates.yaml").is_file():
        return _load_ours(root)
    if (root / "concepts_metadata.csv").is_file():
        return _load_legacy(root)
    if (root / "1_raw" / "concepts_metadata.csv").is_file():
        return _load_legacy(root / "1_raw")
    raise CatalogError(f"catalog folder {str(root)!r} has neither concepts.yaml (daydream layout) "
                       "nor concepts_metadata.csv (1_raw layout)")


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise CatalogError(f"catalog file {str(path)!r} is missing")
    try:
        return load_yaml(_read_template(path, "catalog file"))[0]
    except YAMLTooLarge as exc:
        raise CatalogError(f"{path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}{line}: malformed YAML: {problem}") from None


def _load_ours(root: Path) -> Catalog:
    concepts: dict[str, Concept] = {}
    raw_concepts = _read_yaml(root / "concepts.yaml") or []
    if not isinstance(raw_concepts, list):
        raise CatalogError(f"{root / 'concepts.yaml'}: expected a list of concepts")
    for i, entry in enumerate(raw_concepts, 1):
        if not isinstance(entry, dict) or not entry.get("id"):
            raise CatalogError(f"{root / 'concepts.yaml'}: entry {i} lacks an 'id'")
        cid = str(entry["id"])
        if cid in concepts:
            raise CatalogError(f"{root / 'concepts.yaml'}: concept {cid!r} is defined twice")
        descriptions = {lvl: str(entry[lvl]).strip() for lvl in LEVELS if entry.get(lvl)}
        concepts[cid] = Concept(cid, str(entry.get("name") or cid), descriptions)

    templates: dict[str, dict[str, Template]] = {s: {} for s in STAGES}
    raw_templates = _read_yaml(root / "templates.yaml") or {}
    if not isinstance(raw_templates, dict):
        raise CatalogError(f"{root / 'templates.yaml'}: expected a mapping stage -> list of templates")
    for stage, entries in raw_templates.items():
        where = f"{root / 'templates.yaml'}: {stage}"
        if stage not in STAGES:
            raise CatalogError(f"{where}: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        if not isinstance(entries, list):
            raise CatalogError(f"{where}: expected a list of templates")
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("id"):
                raise CatalogError(f"{where}: template entry lacks an 'id': {entry!r}")
            tid = str(entry["id"])
            if tid in templates[stage]:
                raise CatalogError(f"{where}: {stage} template {tid!r} is defined twice; expected unique ids")
            generator = str(entry.get("generator") or "llm")
            text, tpath = None, None
            if generator == "llm":
                tpath = _inside(root, root / "templates" / stage / str(entry.get("file") or f"{tid}.j2"),
                                f"{where}: template {tid!r}")
                if not tpath.is_file():
                    raise CatalogError(f"{where}: template {tid!r}: file {str(tpath)!r} is missing")
                text = _read_template(tpath)
            templates.setdefault(stage, {})[tid] = _make_template(
                stage, tid, text, entry.get("parser"), generator, str(entry.get("description") or ""),
                str(tpath) if tpath else None, where, _declared_scale(entry, stage, tid, text, where))

    models: dict[str, Model] = {}
    raw_models = _read_yaml(root / "models.yaml") or []
    if not isinstance(raw_models, list):
        raise CatalogError(f"{root / 'models.yaml'}: expected a list of models")
    for entry in raw_models:
        model = make_model(entry, str(root / "models.yaml"))
        if model.id in models:
            raise CatalogError(f"{root / 'models.yaml'}: model {model.id!r} is defined twice; expected unique ids")
        models[model.id] = model
    return Catalog(concepts, templates, models, str(root), _read_combo_mappings(root))


def _inside(root: Path, path: Path, where: str) -> Path:
    """``path`` when it resolves (symbolic links followed) inside the catalog folder ``root``.

    A ``file:`` of ``../../secrets.txt`` would otherwise record any readable file of the machine
    in the ledger as a template.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise CatalogError(f"{where}: file {str(path.relative_to(root) if path.is_relative_to(root) else path)!r} "
                           f"resolves outside the catalog folder {str(root)!r}; expected a file inside it")
    return path


def _read_template(path: Path, what: str = "template") -> str:
    """A catalog text file; one-line CatalogError when it is unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: cannot read {what}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read {what}: {exc.strerror}") from None


def _declared_scale(entry: dict[str, Any], stage: str, tid: str, text: str | None, where: str) -> Scale | None:
    """The ``scale:`` of a templates.yaml entry: checked, and required where the rubric's text
    asks for another range than the default (otherwise its top scores would all fail to parse)."""
    if entry.get("scale") is not None:
        if stage not in SCORED_STAGES:
            raise CatalogError(f"{where}: template {tid!r}: 'scale' applies to evaluation templates only")
        return coerce_scale(entry["scale"], f"{where}: template {tid!r}")
    if stage in SCORED_STAGES and text is not None:
        asked = infer_scale(text)
        if asked != DEFAULT_SCALE:
            raise CatalogError(
                f"{where}: evaluation template {tid!r} asks for scores {scale_label(asked)} but declares no "
                f"scale (the default is {scale_label(DEFAULT_SCALE)}); add 'scale: [{asked[0]}, {asked[1]}]' "
                f"to its entry (or 'scale: [0, 9]' to keep 0-9)")
    return None


def _make_template(stage: str, tid: str, text: str | None, parser: Any, generator: str,
                   description: str, path: str | None, where: str, scale: Scale | None = None) -> Template:
    if stage not in STAGES:
        raise CatalogError(f"{where}: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if generator not in GENERATORS:
        raise CatalogError(f"{where}: template {tid!r} has generator {generator!r}; expected llm or copy")
    name = str(parser).strip() if parser not in (None, "") else ""
    name = LEGACY_PARSER_ALIASES.get(name, name) or DEFAULT_PARSERS[stage]
    return Template(stage, tid, text, name, generator, description, path, scale)


def _legacy_scale(stage: str, tid: str, text: str | None, declared: str, where: str) -> Scale | None:
    """A 1_raw rubric's scale: an optional ``scale`` CSV column ("0-10"), else read from its text."""
    if stage not in SCORED_STAGES:
        return None
    if declared:
        try:
            return parse_scale_option(declared)
        except UsageError:
            raise CatalogError(f"{where}: template {tid!r}: scale {declared!r}; expected MIN-MAX like 0-10") from None
    return infer_scale(text) if text is not None else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CatalogError(f"catalog file {str(path)!r} is missing")
    text = _read_template(path, "catalog file").removeprefix("\ufeff")  # spreadsheet byte-order mark
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        if None in row:  # DictReader files surplus cells under the key None
            raise CatalogError(f"{path}: row {reader.line_num}: {len(reader.fieldnames or []) + len(row[None])} "
                               f"cells, header has {len(reader.fieldnames or [])}")
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    return rows


def _load_legacy(raw: Path) -> Catalog:
    concepts: dict[str, Concept] = {}
    for row in _read_csv(raw / "concepts_metadata.csv"):
        cid = row.get("concept_id", "")
        if not cid:
            continue
        descriptions = {}
        for level in LEVELS:
            f = raw / "concepts" / f"descriptions-{level}" / f"{cid}.txt"
            if f.is_file():
                descriptions[level] = _read_template(f, "concept description").strip()
        concepts[cid] = Concept(cid, row.get("name") or cid, descriptions)

    templates: dict[str, dict[str, Template]] = {s: {} for s in STAGES}
    for stage in STAGES:
        meta = raw / f"{stage}_templates.csv"
        folder = raw / "templates" / stage
        listed = _read_csv(meta) if meta.is_file() else []
        for row in listed:
            tid = row.get("template_id", "")
            if not tid:
                continue
            generator = row.get("generator") or "llm"
            text, tpath = None, None
            if generator == "llm":
                tpath = _inside(raw, folder / f"{tid}.txt", f"{meta}: template {tid!r}")
                if not tpath.is_file():
                    raise CatalogError(f"{meta}: template {tid!r}: file {str(tpath)!r} is missing")
                text = _read_template(tpath)
            templates[stage][tid] = _make_template(stage, tid, text, row.get("parser"), generator,
                                                   row.get("description", ""),
                                                   str(tpath) if tpath else None, str(meta),
                                                   _legacy_scale(stage, tid, text, row.get("scale", ""), str(meta)))
        # Older template files that the CSV no longer lists stay usable (e.g. to re-score imports).
        if folder.is_dir():
            for f in sorted(folder.glob("*.txt")):
                if f.stem not in templates[stage]:
                    text = _read_template(f)
                    templates[stage][f.stem] = _make_template(
                        stage, f.stem, text, None, "llm", "", str(f), str(folder),
                        _legacy_scale(stage, f.stem, text, "", str(folder)))

    release = _legacy_release_dates(raw.parent / "openrouter_free_models.csv")
    models: dict[str, Model] = {}
    for row in _read_csv(raw / "llm_models.csv"):
        if not row.get("id"):
            continue
        # Legacy models were all called through OpenRouter; its 'provider' column is the vendor.
        model = make_model({"id": row["id"], "provider": "openai", "model": row.get("model"),
                            "release_date": release.get(row.get("model", ""))},
                           str(raw / "llm_models.csv"))
        models[model.id] = model
    combos = _read_combo_mappings(raw.parent) or _read_combo_mappings(raw)
    return Catalog(concepts, templates, models, str(raw), combos)


def _legacy_release_dates(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {r["model_name"]: r["release_date"] for r in _read_csv(path)
            if r.get("model_name") and r.get("release_date")}


def _read_combo_mappings(folder: Path) -> dict[str, dict]:
    """Known combos from a ``combo_mappings.csv`` (combo_id, concept_id, description_level, k_max)."""
    path = folder / "combo_mappings.csv"
    if not path.is_file():
        return {}
    combos: dict[str, dict] = {}
    for i, row in enumerate(_read_csv(path), 2):
        cid, concept = row.get("combo_id", ""), row.get("concept_id", "")
        if not cid or not concept:
            raise CatalogError(f"{path}: row {i}: combo_id and concept_id must not be blank")
        entry = combos.setdefault(cid, {"concept_ids": [], "level": row.get("description_level") or
                                        "paragraph", "k": 0})
        if concept not in entry["concept_ids"]:
            entry["concept_ids"].append(concept)
        try:
            entry["k"] = int(row.get("k_max") or 0) or len(entry["concept_ids"])
        except ValueError:
            raise CatalogError(f"{path}: row {i}: k_max {row.get('k_max')!r} is not an integer") from None
    for entry in combos.values():
        entry["concept_ids"].sort()
    return combos


# ----------------------------------------------------------------------------- from the ledger
def catalog_from_ledger(ledger: Any, catalog_hash: str) -> Catalog:
    """Rebuild the catalog recorded by a ``CatalogImported`` event (texts come from the ledger)."""
    from daydream.ledger.events import CATALOG_IMPORTED, catalog_stream

    found = [e for e in ledger.events(stream=catalog_stream(catalog_hash), type=CATALOG_IMPORTED)
             if e.payload.get("catalog_hash", "").startswith(catalog_hash)]
    if not found:
        raise CatalogError(f"ledger {getattr(ledger, 'path', '')}: no CatalogImported event for "
                           f"catalog {catalog_hash[:16]}")
    payload = found[0].payload
    hashes = [h for c in payload["concepts"] for h in c["levels"].values()]
    hashes += [t.get("text_hash") or t["hash"] for t in payload["templates"] if t.get("hash")]
    texts = ledger.get_texts(hashes)
    missing = sorted(set(h for h in hashes if h not in texts))
    if missing:
        raise CatalogError(f"catalog {catalog_hash[:16]}: {len(missing)} text(s) missing from the "
                           f"ledger, first {missing[0][:16]}")
    concepts = {c["id"]: Concept(c["id"], c["name"], {lvl: texts[h] for lvl, h in c["levels"].items()})
                for c in payload["concepts"]}
    templates: dict[str, dict[str, Template]] = {s: {} for s in STAGES}
    for t in payload["templates"]:
        templates.setdefault(t["stage"], {})[t["id"]] = Template(
            t["stage"], t["id"], texts[t.get("text_hash") or t["hash"]] if t.get("hash") else None,
            t.get("parser"), t["generator"], t.get("description", ""), None,
            tuple(t["scale"]) if t.get("scale") else None)  # type: ignore[arg-type]
    models = {}
    for m in payload["models"]:
        models[m["id"]] = Model(**m)
    combos = {c["combo_id"]: {k: v for k, v in c.items() if k != "combo_id"}
              for c in payload.get("combos", [])}
    return Catalog(concepts, templates, models, payload.get("source", ""), combos)


# ----------------------------------------------------------------------------- models in the ledger
@dataclass(frozen=True)
class RecordedModel:
    """What a model id means in a ledger: its definition and identity, and where that comes from.

    ``definition`` is a ``Model.as_dict()``: the identity as first planned, the newest settings.
    ``version`` is the version of the id's ``model:<id>`` stream (0 when none: a ledger from before
    model identities were recorded). ``binding`` is False for a definition no plan has used (one
    only found in a catalog snapshot), which a later plan may replace.
    """

    definition: dict[str, Any]
    identity_hash: str
    version: int
    binding: bool
    source: str


def recorded_models(ledger: Any) -> dict[str, RecordedModel]:
    """Every model id the ledger knows, as planned work must be called.

    The ``model:<id>`` streams decide (``ModelDefined``, then ``ModelSettingsChanged``). Ids without
    one come from ``CatalogImported`` snapshots: for a ledger planned before model identities were
    recorded, the *first* snapshot a plan used that defines the id fixes its identity (a later
    catalog never redefines it) and the newest snapshot with that identity gives its settings; an
    id no plan used takes the newest snapshot's definition.
    """
    from daydream.ledger import events as ev

    found: dict[str, RecordedModel] = {}
    # One read for the four kinds (on a ledger across a network, one round trip instead of three).
    everything = ledger.events(type=[ev.MODEL_DEFINED, ev.MODEL_SETTINGS_CHANGED, ev.CATALOG_IMPORTED,
                                     ev.COHORT_PLANNED])
    for e in everything:
        if e.type not in (ev.MODEL_DEFINED, ev.MODEL_SETTINGS_CHANGED):
            continue
        p = e.payload
        mid = p["model_id"]
        if e.type == ev.MODEL_DEFINED:
            definition = dict(p["definition"])
        elif mid in found:
            # ``price`` is recorded only when set: a change without it takes it away.
            kept = {k: v for k, v in found[mid].definition.items() if k != "price"}
            definition = {**kept, **p["settings"]}
        else:  # a settings change without its definition: nothing to apply it to
            continue
        found[mid] = RecordedModel(definition, p["identity_hash"], e.version, True, f"{e.type} seq {e.seq}")
    snapshots = [e for e in everything if e.type == ev.CATALOG_IMPORTED]
    if not snapshots:
        return found
    legacy = {e.payload.get("catalog_hash") for e in everything
              if e.type == ev.COHORT_PLANNED and "models" not in e.payload}
    first_legacy: dict[str, tuple[dict[str, Any], str]] = {}
    newest: dict[str, tuple[dict[str, Any], str]] = {}
    newest_same: dict[str, dict[str, Any]] = {}
    for e in snapshots:
        label = f"catalog {str(e.payload.get('catalog_hash'))[:16]} (seq {e.seq})"
        for m in e.payload.get("models", []):
            mid = m.get("id")
            if mid in found or not mid:
                continue
            if e.payload.get("catalog_hash") in legacy and mid not in first_legacy:
                first_legacy[mid] = (m, label)
            newest[mid] = (m, label)
            if mid in first_legacy and model_identity(m) == model_identity(first_legacy[mid][0]):
                newest_same[mid] = m
    for mid, (m, label) in newest.items():
        binding = mid in first_legacy
        if binding:
            m, label = first_legacy[mid]
            m = {**{k: v for k, v in m.items() if k != "price"}, **model_settings(newest_same.get(mid, m))}
        definition = _without_default_key_elsewhere(m)
        found[mid] = RecordedModel(definition, identity_hash(model_identity(definition)), 0, binding, label)
    return found


def _without_default_key_elsewhere(definition: dict[str, Any]) -> dict[str, Any]:
    # Snapshots recorded before the key rule gave every openai model $OPENROUTER_API_KEY whatever
    # its base_url: never send that key to a server that is not OpenRouter.
    if definition.get("api_key_env") == DEFAULT_API_KEY_ENV and not is_openrouter(definition.get("base_url")):
        return {**definition, "api_key_env": None}
    return dict(definition)


# ----------------------------------------------------------------------------- template checks
def check_template(template: Template, variables: set[str] | None = None) -> None:
    """Compile a template's Jinja2 text in the sandbox the runner uses; TemplateError with file:line.

    With ``variables`` (what its stage provides), a name the template reads but nobody defines is an
    error too: otherwise every generation of the template would fail only when the runner renders it.
    """
    if template.text is None:
        return
    import jinja2
    import jinja2.meta
    from jinja2.sandbox import SandboxedEnvironment

    from daydream.errors import TemplateError

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    where = template.path or f"{template.stage} template {template.id}"
    try:
        parsed = env.parse(template.text)
        env.from_string(template.text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}:{exc.lineno}: Jinja syntax error in {template.stage} template "
                            f"{template.id!r}: {exc.message}") from None
    if variables is not None:
        unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - variables - set(env.globals))
        if unknown:
            raise TemplateError(f"{where}: {template.stage} template {template.id!r} uses undefined "
                                f"variable(s) {', '.join(repr(u) for u in unknown)}; available: "
                                f"{', '.join(sorted(variables))}")
