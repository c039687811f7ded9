"""The offline model's text: a deterministic stand-in for an LLM's answer, depending only on (gen_id, prompt).

It picks up concept names and phrases from the prompt, writes plausible text around them, and
follows the output format the prompt asks for (``<essay>`` tags, ``<essay-idea>`` blocks, a final
``SCORE: X`` line). Evaluation scores are computed from the text under evaluation, so different
essays get different scores. The ``offline`` provider plugin (plugins/daydream_plugins/
provider_offline.py) answers with it, and so does the loopback stub server of ``daydream.testing``
(so a test over HTTP sees the same answers as an offline run); core code never imports a plugin.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

OFFLINE_MODEL = "daydream-offline-v1"

# Regexes kept simple on purpose: the offline model must answer thousands of prompts a second.
# A concept block in a prompt: a bold-only line or a heading holding a short name, then the
# concept's description (a line of at least a dozen words) right below it.
_CONCEPT_BLOCK = re.compile(
    r"^[ \t]*(?:\*\*([^*\n:()]{2,60})\*\*|#{1,4}[ \t]+([^#*\n:()]{2,60}))[ \t]*\n(?=[ \t]*(?:\S+[ \t]+){11})",
    re.MULTILINE)
# Concepts listed as "1. Name — description".
_NUMBERED_CONCEPT = re.compile(r"^[ \t]*\d+\.[ \t]+([^—–\n:()]{2,60}?)[ \t]+[—–][ \t]+\S", re.MULTILINE)
# Sections a prompt asks for, as "## Problem — who has it …".
_REQUESTED_SECTION = re.compile(r"^#{2,3}[ \t]+([A-Z][\w ]{1,30}?)[ \t]+[—–-][ \t]", re.MULTILINE)
# A requested line format of the form "<concept A> + <concept B>: …".
_LINK_FORMAT = re.compile(r"<[^<>\n]{1,30}>\s*\+\s*<[^<>\n]{1,30}>")
# "Default Mode Network", "Dearth of AI-driven Discoveries", "Human Creativity and Insight".
# (Not joined by "and": the offline model's own "A and B" would merge two names into one.)
# Words are capped at 40 characters: no real word is longer, and an unbounded run over a pasted
# blob (base64, a hash) is retried from every capital inside it — quadratic in its length — and
# would come back verbatim in the answer.
_CAPITALISED = re.compile(r"[A-Z][\w-]{2,40}(?:(?: of| for| in| the)? [A-Z][\w-]{2,40})+")
_NOUN_PHRASE = re.compile(r"(?:the|of) ([a-z]{4,}[ -][a-z]{4,}(?:[ -][a-z]{4,})?)")
_LONG_WORD = re.compile(r"[a-z]{8,40}")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# An evaluation prompt asks for "SCORE: X", or speaks of a score on a 0-9 scale.
_SCORE_LINE = re.compile(r"SCORE\s*:")
_SCALE = re.compile(r"\b0\s*(?:-|–|to)\s*9\b")
# Where evaluation templates put the text under evaluation, and where their instructions begin.
_EVAL_START = re.compile(r"^(?:RESPONSE TO EVALUATE|CANDIDATE TEXT|TEXT TO EVALUATE|ESSAY)\s*:\s*$",
                         re.MULTILINE | re.IGNORECASE)
_EVAL_END = re.compile(r"^(?:-{3}\s*[A-Z][A-Z ]+\s*-{3}|={4,})\s*$", re.MULTILINE)

# Words that look like concepts in prompts but are template instructions.
_INSTRUCTION_WORDS = {
    "essay", "output", "format", "thinking", "concept", "concepts", "inputs", "input", "mechanism",
    "step", "steps", "score", "evaluation", "instructions", "response", "template", "task", "role",
    "goal", "notes", "rules", "link", "links", "summary", "selection", "criteria", "example",
    "examples", "guidance", "length", "title", "wrap-up", "deliberation", "seed", "stage",
}
_STOP_LONG = {
    "something", "everything", "therefore", "however", "including", "available",
    "following", "otherwise", "different", "specific", "specifically", "explicit", "paragraph",
    "paragraphs", "sentences", "evaluate", "evaluation", "response", "instructions", "produce",
    "include", "markdown", "readable", "coherent", "narrative", "integrate", "integration",
}

_SENTENCES = (
    "{A} supplies the raw material, while {b} decides which of its variations are worth keeping.",
    "Read through the lens of {b}, {a} stops being a background process and becomes a search strategy.",
    "The link between {a} and {b} is a feedback loop: each round of {b} reshapes what {a} produces next.",
    "A concrete mechanism follows: {a} generates candidates, {b} scores them, and the survivors are written back.",
    "If {a} is the generator, then {b} plays the critic, and the pairing only works when both run continuously.",
    "What makes {a} useful here is cost: it runs cheaply in the background, so {b} can afford to be selective.",
    "One testable prediction is that weakening {b} should flood the system with low-value output from {a}.",
    "The combination suggests a measurable signal, namely how often {a} yields something {b} keeps.",
    "{A} alone drifts; coupled to {b}, the drift turns into directed exploration.",
    "The interesting case is failure: when {b} stalls, {a} keeps producing, and the backlog itself becomes data.",
    "Seen this way, {a} and {b} are two halves of one loop rather than separate topics.",
    "A practical version would log every pass through {a}, so that {b} can be audited later.",
    "The design choice that matters most is how strictly {b} filters what {a} proposes.",
    "This reframes {a} as an investment: the returns arrive only once {b} has found a use for it.",
    "Over many iterations the loop between {a} and {b} accumulates an advantage that is hard to copy.",
)
_REMARKS_GOOD = (
    "The essay names its mechanism and keeps its terms consistent.",
    "Several concepts are connected through explicit cause and effect.",
    "The argument has a clear arc from problem to proposal.",
    "Claims are specific enough to be tested.",
)
_REMARKS_WEAK = (
    "Some links between concepts are asserted rather than explained.",
    "Evaluation metrics are mentioned but not defined precisely.",
    "Parts of the text repeat the same point in different words.",
    "Prior art is not discussed in enough detail.",
)


# The offline model's own stock words must not come back as "concepts" when its drafts are fed
# into essay prompts.
_STOP_LONG |= {w for line in _SENTENCES + _REMARKS_GOOD + _REMARKS_WEAK
               for w in _LONG_WORD.findall(line.lower())}


def _rng(gen_id: str, prompt: str) -> random.Random:
    digest = hashlib.sha256(f"{gen_id}\x00{prompt}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _dedupe(items: list[str], limit: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.lower()
        if key in seen or key in _INSTRUCTION_WORDS or len(item) < 3:
            continue
        seen.add(key)
        out.append(item)
        if len(out) >= limit:
            break
    return out


def extract_terms(text: str, limit: int = 12) -> list[str]:
    """Concept-like terms in ``text``: the names of concept blocks (``**Name**`` or ``## Name`` over a
    description, or ``1. Name — description``) when there are two or more, else capitalised phrases, most frequent first, padded
    with a few frequent long words."""
    blocks = [(bold or heading).strip() for bold, heading in _CONCEPT_BLOCK.findall(text)]
    numbered = [name.strip() for name in _NUMBERED_CONCEPT.findall(text)]
    names = _dedupe([name for name in blocks + numbered if len(name.split()) <= 6], limit)
    if len(names) >= 2:
        return names
    found = Counter(m[4:] if m.startswith("The ") else m for m in _CAPITALISED.findall(text))
    capitalised = [m for m, _ in found.most_common(limit)]
    words = Counter(w for w in _LONG_WORD.findall(text.lower()) if w not in _STOP_LONG)
    covered = " ".join(capitalised).lower()
    # A little variety; content words are weaker names, and none that repeat a phrase's word.
    frequent = [w for w, _ in words.most_common(6) if w not in covered][:2]
    # A single "block" is more likely an instruction section ("## Output rules") than a concept.
    terms = _dedupe(capitalised + frequent, limit)
    return terms or ["the idea"]


def extract_phrases(text: str, limit: int = 8, scan_chars: int = 5000) -> list[str]:
    """Short lower-case noun phrases (``the default mode network``) for flavour, from the first
    ``scan_chars`` characters (plenty for flavour, and keeps long prompts fast)."""
    counts = Counter(_NOUN_PHRASE.findall(text, 0, scan_chars))
    return [p for p, _ in counts.most_common(limit)]


def _sentence(rng: random.Random, terms: list[str]) -> str:
    a, b = (rng.sample(terms, 2) if len(terms) >= 2 else (terms[0], "careful selection"))
    template = rng.choice(_SENTENCES)
    return template.format(a=a, b=b, A=a[:1].upper() + a[1:])


def _paragraph(rng: random.Random, terms: list[str], phrases: list[str], n: int) -> str:
    sentences = [_sentence(rng, terms) for _ in range(n)]
    if phrases and rng.random() < 0.6:
        sentences.insert(rng.randrange(len(sentences) + 1),
                         f"Notice how {rng.choice(phrases)} fits into this picture.")
    return " ".join(sentences)


def _essay(rng: random.Random, terms: list[str], phrases: list[str], sections: list[str]) -> str:
    # Length and breadth vary by seed so that evaluations of different essays differ.
    focus = rng.sample(terms, min(len(terms), rng.randint(2, 6)))
    title = f"# {focus[0][:1].upper() + focus[0][1:]} and {focus[-1] if len(focus) > 1 else 'its uses'}"
    parts = [title, ""]
    if sections:  # the prompt asked for these sections: write one paragraph under each
        for name in sections:
            parts += [f"## {name}", "", _paragraph(rng, focus, phrases, rng.randint(2, 5)), ""]
        return "\n".join(parts).strip()
    for i in range(rng.randint(2, 6)):
        if i and rng.random() < 0.4:
            heading = rng.choice(focus)
            parts += [f"## {heading[:1].upper()}{heading[1:]}", ""]
        parts += [_paragraph(rng, focus, phrases, rng.randint(2, 6)), ""]
    parts.append(f"In short, {focus[0]} works because {', '.join(focus[1:]) or 'selection'} "
                 "turn its output into something that can be kept and tested.")
    return "\n".join(parts).strip()


def _ideas(rng: random.Random, terms: list[str], phrases: list[str]) -> str:
    stages = max(2, min(len(terms), rng.randint(3, 6)))
    blocks: list[str] = []
    idea = _paragraph(rng, terms[:2], phrases, 2)
    for stage in range(1, stages + 1):
        if stage > 1:
            concept = terms[(stage - 1) % len(terms)]
            blocks += ["", f"### Step {stage}: Concept {concept}", "<thinking>",
                       f"Option one ties {concept} to the loop directly; option two treats it as a "
                       "constraint; option three uses it as a metric. The first keeps the thread tightest.",
                       "</thinking>"]
            idea = idea + " " + _paragraph(rng, terms[:stage + 1], phrases, rng.randint(1, 2))
        blocks += [f'<essay-idea stage="{stage}">', idea, "</essay-idea>"]
    blocks += ["", "Wrap-up: the thread holds together; the most helpful concepts were "
               f"{terms[0]} and {terms[-1]}."]
    return "\n".join(blocks).strip()


def _list(rng: random.Random, terms: list[str], phrases: list[str], link_format: bool) -> str:
    if link_format and len(terms) >= 2:  # "<concept A> + <concept B>: …", one per line, nothing else
        lines = []
        for _ in range(rng.randint(8, 12)):
            a, b = rng.sample(terms, 2)
            lines.append(f"{a} + {b}: {_sentence(rng, [a, b])}")
        return "\n".join(lines)
    lines = [f"Brainstorm: connections between {', '.join(terms[:4])}", ""]
    for i in range(rng.randint(6, 10)):
        lines.append(f"{i + 1}. {_sentence(rng, terms)}")
    lines += ["", _paragraph(rng, terms, phrases, 2)]
    return "\n".join(lines)


def _text_under_evaluation(prompt: str) -> str:
    start = _EVAL_START.search(prompt)
    if start is None:
        return prompt
    end = _EVAL_END.search(prompt, start.end())
    return prompt[start.end():end.start() if end else len(prompt)]


def text_quality(text: str) -> float:
    """A 0–1 content measure of ``text``: distinct concept-like terms, sentences and length."""
    words = len(text.split())
    sentences = len(_SENTENCE_END.findall(text))
    distinct = len(set(_LONG_WORD.findall(text.lower())))
    capitalised = len(set(_CAPITALISED.findall(text)))
    paragraphs = text.count("\n\n") + 1
    return (0.35 * min(distinct / 60, 1.0) + 0.25 * min(words / 600, 1.0)
            + 0.2 * min(sentences / 25, 1.0) + 0.1 * min(capitalised / 8, 1.0)
            + 0.1 * min(paragraphs / 6, 1.0))


def _evaluation(rng: random.Random, prompt: str) -> str:
    text = _text_under_evaluation(prompt)
    quality = text_quality(text)
    jitter = rng.uniform(-0.8, 0.8)
    score = max(0, min(9, round(1 + 7.5 * quality + jitter)))
    terms = extract_terms(text, 6)
    words = len(text.split())
    lines = [
        f"Assessment ({OFFLINE_MODEL}, a deterministic offline stand-in):",
        "",
        f"- Concepts engaged: {', '.join(terms[:4])}.",
        f"- Length: about {words} words in {len(_SENTENCE_END.findall(text))} sentences.",
        f"- Strength: {rng.choice(_REMARKS_GOOD)}",
        f"- Weakness: {rng.choice(_REMARKS_WEAK)}",
        "",
        f"Overall the text earns a {score} on the 0-9 scale.",
        "",
        f"SCORE: {score}",
    ]
    return "\n".join(lines)


def _asks_for_score(prompt: str) -> bool:
    # Literal checks first: this runs on every prompt, drafts included.
    if "SCORE" in prompt and _SCORE_LINE.search(prompt):
        return True
    lowered = prompt.lower()
    at = lowered.find("score")
    while at >= 0:
        window = lowered[at:at + 70].split("\n", 1)[0]
        if _SCALE.search(window):
            return True
        at = lowered.find("score", at + 5)
    return False


def offline_answer(gen_id: str, prompt: str) -> str:
    """The offline model's answer to ``prompt`` for generation ``gen_id`` (deterministic)."""
    rng = _rng(gen_id, prompt)
    if _asks_for_score(prompt):
        return _evaluation(rng, prompt)
    terms = extract_terms(prompt)
    phrases = extract_phrases(prompt)
    if "<essay-idea" in prompt:
        return _ideas(rng, terms, phrases)
    sections = _dedupe(_REQUESTED_SECTION.findall(prompt), 8)
    sections = sections if len(sections) >= 2 else []
    if re.search(r"<essay>", prompt, re.IGNORECASE):
        thinking = _paragraph(rng, terms, phrases, 2)
        essay = _essay(rng, terms, phrases, sections)
        return f"<thinking>\n{thinking}\n</thinking>\n\n<essay>\n{essay}\n</essay>"
    if sections or re.search(r"\bessay\b", prompt, re.IGNORECASE):
        return _essay(rng, terms, phrases, sections)
    return _list(rng, terms, phrases, _LINK_FORMAT.search(prompt) is not None)


def estimate_tokens(text: str) -> int:
    """Rough token count (words × 1.3), the way the offline model reports usage."""
    return int(round(len(text.split()) * 1.3))
