"""Versioned prompt templates and the one renderer used by `data build` and by `predict`.

Examples are rendered as prompt/completion pairs: the prompt is the base model's own chat template
applied to (system, user) with the generation prompt, the completion is the compact JSON answer plus the
template's end-of-turn marker. Training on the completion only then works for any chat template, with or
without `{% generation %}` blocks.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from os import PathLike
from typing import Any

import yaml

from sclcoder.artifacts import PROMPT_FILE
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import SclError
from sclcoder.files import reading, require_file, resource_path
from sclcoder.recipe import DEFAULT_PROMPT
from sclcoder.sft.answer import dump_answer

__all__ = ["PROMPT_FILE", "PromptTemplate", "Renderer", "load_prompt"]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    user: str
    sha256: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def messages(self, text: str, code_system: CodeSystem) -> list[dict[str, str]]:
        slots = {"code_system": code_system.label, "text": text}
        return [
            {"role": "system", "content": string.Template(self.system).substitute(slots)},
            {"role": "user", "content": string.Template(self.user).substitute(slots)},
        ]


def load_prompt(path: str | PathLike[str] = DEFAULT_PROMPT) -> PromptTemplate:
    p = require_file(resource_path(path), "prompt template")
    try:
        with reading(p):
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SclError(f"not valid YAML: {exc}", path=p) from None
    if not isinstance(data, dict):
        raise SclError("a prompt template is a YAML mapping", path=p)
    for key in ("name", "version", "system", "user"):
        if key not in data:
            raise SclError("missing", path=p, field=key)
        if not isinstance(data[key], (str, int, float)) or (
            key in ("system", "user") and not isinstance(data[key], str)
        ):
            raise SclError("must be text", path=p, field=key)
    unknown = sorted(set(data) - {"name", "version", "system", "user"})
    if unknown:
        raise SclError(f"unknown key(s) {', '.join(unknown)}", path=p, field=unknown[0])
    if "${text}" not in data["user"]:
        raise SclError("the user template must contain ${text}", path=p, field="user")
    for key in ("system", "user"):
        try:
            string.Template(data[key]).substitute(code_system="X", text="X")
        except (KeyError, ValueError) as exc:
            raise SclError(f"bad placeholder {exc}: only ${{code_system}} and ${{text}}", path=p, field=key) from None
    # The hash covers the meaning (the texts), not comments, so that an edit without a version bump shows.
    digest = hashlib.sha256(f"{data['system']}\0{data['user']}".encode()).hexdigest()
    return PromptTemplate(str(data["name"]), str(data["version"]), data["system"], data["user"], digest)


class Renderer:
    """Binds a tokenizer's chat template to a prompt template and a code system."""

    def __init__(self, tokenizer: Any, template: PromptTemplate, code_system: CodeSystem | str) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise SclError(
                "the tokenizer has no chat template",
                hint="set model.chat_template in the recipe to a Jinja template file",
            )
        self.tokenizer = tokenizer
        self.template = template
        self.code_system = CodeSystem.parse(code_system)
        self.end_of_turn = self._end_of_turn()

    def messages(self, text: str) -> list[dict[str, str]]:
        return self.template.messages(text, self.code_system)

    def prompt(self, text: str) -> str:
        return self.tokenizer.apply_chat_template(self.messages(text), tokenize=False, add_generation_prompt=True)

    def completion(self, answer: dict[str, Any]) -> str:
        return dump_answer(answer) + self.end_of_turn

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the rendered prompt, exactly as training tokenizes it (no extra special tokens)."""
        return self.tokenizer(self.prompt(text), add_special_tokens=False)["input_ids"]

    def _end_of_turn(self) -> str:
        # What the template writes after an assistant message, up to the token that ends the turn.
        probe = "\x07sclcoder\x07"
        msgs = [*self.messages("x"), {"role": "assistant", "content": probe}]
        full = self.tokenizer.apply_chat_template(msgs, tokenize=False)
        after = full[full.index(probe) + len(probe) :]
        eos = self.tokenizer.eos_token
        if eos and eos in after:
            return after[: after.index(eos) + len(eos)]
        return after.rstrip("\n") or (eos or "")
