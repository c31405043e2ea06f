"""A teacher LLM behind any OpenAI-compatible endpoint (a vLLM server in practice) for code-centric
synthesis: short evidence spans for rare or missing codes, and evidence quotes (rationales) for notes
that carry codes but no evidence.

Every request is cached on disk by a hash of what is sent, so a rerun costs nothing; requests run
concurrently with retries and a progress bar. Unusable answers (not JSON, wrong shape, quotes that do not
align) are counted skips, logged, never silent. Note text goes to a non-loopback endpoint only when the
recipe says `send_notes: true`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sclcoder.data import codes as codes_mod
from sclcoder.data.align import Aligner
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence
from sclcoder.endpoints import check_reachable, openai_client
from sclcoder.errors import SclError
from sclcoder.files import write_text_atomic
from sclcoder.progress import bar
from sclcoder.recipe import SynthesisSection, TeacherSection
from sclcoder.sft.examples import Example

log = logging.getLogger("sclcoder")

SNIPPETS_SCHEMA = {
    "type": "object",
    "properties": {
        "snippets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "evidence": {"type": "string"}},
                "required": ["text", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["snippets"],
    "additionalProperties": False,
}

RATIONALES_SCHEMA = {
    "type": "object",
    "properties": {
        "evidence": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "quotes": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["code", "quotes"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["evidence"],
    "additionalProperties": False,
}


def is_loopback(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Request:
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    name: str

    def key(self, cfg: TeacherSection) -> str:
        payload = json.dumps(
            [
                cfg.endpoint.rstrip("/"),
                cfg.model,
                cfg.temperature,
                cfg.max_tokens,
                self.messages,
                self.schema,
            ],
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


class Teacher:
    def __init__(self, cfg: TeacherSection, cache_dir: str | os.PathLike[str]) -> None:
        self.cfg = cfg
        self.cache_dir = Path(cache_dir)
        self.skipped: Counter = Counter()
        self.requests_sent = 0
        self.cache_hits = 0
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else "not-needed"
            self._client = openai_client(
                self.cfg.endpoint, api_key=key, timeout=self.cfg.timeout_s, max_retries=self.cfg.max_retries
            )
        return self._client

    def check_reachable(self) -> None:
        check_reachable(
            self.client, self.cfg.endpoint, what="teacher endpoint", field="data.synthesis.teacher.endpoint"
        )

    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _ask(self, req: Request) -> str | None:
        key = req.key(self.cfg)
        cached = self._cache_file(key)
        if cached.exists():
            self.cache_hits += 1
            return json.loads(cached.read_text(encoding="utf-8"))["content"]
        try:
            resp = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=req.messages,
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": req.name, "schema": req.schema},
                },
            )
        except Exception as exc:  # after the client's own retries
            self.skipped["request failed"] += 1
            log.warning("teacher request failed after retries: %s: %s", type(exc).__name__, exc)
            return None
        self.requests_sent += 1
        content = resp.choices[0].message.content or ""
        write_text_atomic(cached, json.dumps({"request": req.messages, "content": content}, ensure_ascii=False))
        return content

    def ask_all(self, requests: Sequence[Request], description: str) -> list[dict[str, Any] | None]:
        """Answers parsed as JSON objects (None where the request failed or the answer is not JSON)."""
        results: list[dict[str, Any] | None] = [None] * len(requests)
        with bar(description, len(requests)) as progress, ThreadPoolExecutor(self.cfg.concurrency) as pool:
            futures = {pool.submit(self._ask, r): i for i, r in enumerate(requests)}
            for fut in as_completed(futures):
                i = futures[fut]
                progress.advance()
                content = fut.result()
                if content is None:
                    continue
                try:
                    obj = json.loads(content)
                except json.JSONDecodeError:
                    self.skipped["answer not JSON"] += 1
                    log.warning("teacher answer is not JSON: %.80r", content)
                    continue
                if not isinstance(obj, dict):
                    self.skipped["answer not a JSON object"] += 1
                    continue
                results[i] = obj
        return results

    def report(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "skipped": dict(self.skipped),
        }


# ------------------------------------------------------------------------------------ code expansion


def expansion_requests(
    targets: Sequence[str],
    system: CodeSystem,
    per_code: int,
    examples: dict[str, list[str]],
    share_notes: bool,
) -> list[tuple[str, Request]]:
    """One request per code: short realistic excerpts that document it, with real spans as examples
    only when note text may be shared with the endpoint."""
    out = []
    for code in targets:
        desc = codes_mod.describe(code, system) or ""
        shots = examples.get(code, [])[:3] if share_notes else []
        lines = [
            f"Write {per_code} different short excerpts (one or two sentences each) from hospital clinical "
            f"notes that document the {system.label} code {code} ({desc}).",
            "Vary the wording: abbreviations, synonyms and note sections, as clinicians write.",
            'For each excerpt give "text" and "evidence": the exact words of the text that support the code.',
        ]
        if shots:
            lines.append("Real evidence for this code looks like: " + "; ".join(json.dumps(s) for s in shots))
        messages = [
            {
                "role": "system",
                "content": "You write realistic excerpts of clinical notes. Answer with JSON only.",
            },
            {"role": "user", "content": "\n".join(lines)},
        ]
        out.append((code, Request(messages, SNIPPETS_SCHEMA, "snippets")))
    return out


def snippets_to_examples(
    code: str, answer: dict[str, Any] | None, cfg: SynthesisSection, skipped: Counter, seen: set[str]
) -> list[Example]:
    """Keep snippets whose evidence aligns inside their text, within length bounds, not seen before."""
    if answer is None:
        return []
    items = answer.get("snippets")
    if not isinstance(items, list):
        skipped["answer without snippets"] += 1
        return []
    out = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or not isinstance(item.get("evidence"), str)
        ):
            skipped["snippet of the wrong shape"] += 1
            continue
        text, quote = item["text"].strip(), item["evidence"].strip()
        if not (20 <= len(text) <= 600) or not (cfg.min_quote_chars <= len(quote) <= cfg.max_quote_chars):
            skipped["snippet or evidence out of length bounds"] += 1
            continue
        hit = Aligner(text, fuzzy_threshold=101).align(quote)  # exact or case/space-normalised only
        if hit is None:
            skipped["evidence not found in its snippet"] += 1
            continue
        key = " ".join(text.lower().split())
        if key in seen:
            skipped["duplicate snippet"] += 1
            continue
        seen.add(key)
        out.append(
            Example("synthetic", text, [(code, [text[hit.begin : hit.end]])], f"teacher:{code}", origin="teacher")
        )
    return out


# ---------------------------------------------------------------------------------------- rationales


def rationale_request(doc: Document) -> Request:
    codes = sorted(doc.diagnosis_codes)
    listing = "\n".join(f"- {c}: {codes_mod.describe(c, doc.code_system) or ''}" for c in codes)
    messages = [
        {"role": "system", "content": "You are an expert clinical coder. Answer with JSON only."},
        {
            "role": "user",
            "content": f"Clinical note:\n{doc.text}\n\nThe note was assigned these {doc.code_system.label} "
            f"codes:\n{listing}\n\nFor each code, quote verbatim the words of the note that support it "
            "(short phrases, copied exactly).",
        },
    ]
    return Request(messages, RATIONALES_SCHEMA, "rationales")


def apply_rationales(doc: Document, answer: dict[str, Any] | None, cfg: SynthesisSection, skipped: Counter) -> Document:
    """The note with the teacher's quotes that align to it added as evidence of its gold codes."""
    if answer is None:
        return doc
    items = answer.get("evidence")
    if not isinstance(items, list):
        skipped["answer without evidence"] += 1
        return doc
    aligner = Aligner(doc.text)
    evidence = set(doc.evidence)
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("quotes"), list):
            skipped["rationale of the wrong shape"] += 1
            continue
        try:
            code = codes_mod.normalize(str(item.get("code", "")), doc.code_system)
        except SclError:
            skipped["rationale for a malformed code"] += 1
            continue
        if code not in doc.codes:
            skipped["rationale for a code the note does not have"] += 1
            continue
        for quote in item["quotes"]:
            if not isinstance(quote, str) or not (cfg.min_quote_chars <= len(quote.strip()) <= cfg.max_quote_chars):
                skipped["quote out of length bounds"] += 1
                continue
            hit = aligner.align(quote.strip())
            if hit is None:
                skipped["quote not found in the note"] += 1
                continue
            evidence.add(Evidence(hit.begin, hit.end, code, "teacher"))
    return Document(doc.id, doc.text, set(doc.codes), doc.code_system, sorted(evidence), dict(doc.meta))


def synthesise(
    cfg: SynthesisSection,
    *,
    train_docs: list[Document],
    system: CodeSystem,
    rng: random.Random,
    offline: Callable[[str, CodeSystem, int, random.Random], list[Example]],
    cache_dir: Path,
) -> tuple[list[Document], list[Example], dict[str, Any]]:
    """Teacher rationales for notes without evidence, then synthetic spans for rare and missing codes.

    Returns the notes (with any new evidence), the synthetic examples and a report for stats.json.
    """
    report: dict[str, Any] = {"targets": [], "by_origin": {}}
    teacher = Teacher(cfg.teacher, cache_dir) if cfg.teacher else None
    docs = train_docs
    if cfg.rationales:
        if teacher is None:
            raise SclError("rationales need a teacher", field="data.synthesis.rationales")
        if not is_loopback(teacher.cfg.endpoint) and not teacher.cfg.send_notes:
            raise SclError(
                f"rationales send whole notes to {teacher.cfg.endpoint}",
                field="data.synthesis.teacher.send_notes",
                hint="set it to true only if that endpoint may receive clinical text",
            )
    if teacher is not None:
        teacher.check_reachable()
    if cfg.rationales:
        assert teacher is not None
        todo = [i for i, d in enumerate(docs) if d.diagnosis_codes and not d.evidence]
        answers = teacher.ask_all([rationale_request(docs[i]) for i in todo], "teacher rationales")
        docs = list(docs)
        for i, answer in zip(todo, answers, strict=True):
            docs[i] = apply_rationales(docs[i], answer, cfg, teacher.skipped)
        report["rationales"] = {
            "notes": len(todo),
            "notes_with_evidence": sum(1 for i in todo if docs[i].evidence),
        }

    counts: Counter = Counter()
    spans_by_code: dict[str, list[str]] = {}
    for doc in docs:
        for ev in doc.evidence:
            if doc.system_of(ev.code) is system:
                counts[ev.code] += 1
                spans_by_code.setdefault(ev.code, []).append(doc.quote(ev))
    wanted = set(counts) | {codes_mod.validate(c, system) for c in cfg.codes}
    targets = sorted(c for c in wanted if counts[c] < cfg.rare_threshold)
    report["targets"] = targets
    examples: list[Example] = []
    missing = list(targets)
    if teacher is not None and targets:
        share = is_loopback(teacher.cfg.endpoint) or teacher.cfg.send_notes
        reqs = expansion_requests(targets, system, cfg.per_code, spans_by_code, share)
        answers = teacher.ask_all([r for _, r in reqs], "teacher spans")
        seen: set[str] = set()
        missing = []
        for (code, _), answer in zip(reqs, answers, strict=True):
            got = snippets_to_examples(code, answer, cfg, teacher.skipped, seen)[: cfg.per_code]
            examples.extend(got)
            if not got:
                missing.append(code)
    if cfg.offline_fallback:
        for code in missing:
            examples.extend(offline(code, system, cfg.per_code, rng))
    report["by_origin"] = dict(Counter(ex.origin for ex in examples))
    if teacher is not None:
        report["teacher"] = teacher.report()
    return docs, examples, report
