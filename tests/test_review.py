"""The coder's desk (#27): decisions in the browser land in the corrections file, exactly and durably; the file is
checked against its notes; corrections become span, hard-negative and document examples; `train --from`
continues an adapter and records where it came from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from sclcoder.data.corrections import read_corrections, reduce_corrections
from sclcoder.errors import SclError
from tests.helpers import free_port, headless_chromium

NOTES = {
    "n1": "Patient with type 2 diabetes mellitus on metformin. Essential hypertension noted. Chest pain resolved.",
    "n2": "Acute kidney failure with creatinine rise, treated with fluids. Denies fever.",
    "n3": "Routine follow up, nothing new.",
}


def _quote(note: str, text: str, conf: float) -> dict:
    b = NOTES[note].index(text)
    return {"text": text, "begin": b, "end": b + len(text), "match": "exact"}


def _code(note: str, code: str, quotes: list[str], conf: float) -> dict:
    return {"code": code, "confidence": conf, "evidence": [_quote(note, q, conf) for q in quotes]}


PREDICTIONS = [
    {
        "id": "n1",
        "adapter": "/runs/a/adapter",
        "codes": [
            _code("n1", "E11.9", ["type 2 diabetes mellitus", "metformin"], 0.8),
            _code("n1", "I10", ["Essential hypertension"], 0.6),
            _code("n1", "R07.9", ["Chest pain"], 0.2),
        ],
    },
    {
        "id": "n2",
        "adapter": "/runs/a/adapter",
        "codes": [_code("n2", "N17.9", ["Acute kidney failure"], 0.9), _code("n2", "R50.9", ["fever"], 0.1)],
    },
    {"id": "n3", "adapter": "/runs/a/adapter", "codes": []},
]


@pytest.fixture
def review_files(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in NOTES.items()))
    preds = tmp_path / "notes.predictions.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in PREDICTIONS))
    return notes, preds


def _line(note: str, action: str, code: str | None = None, spans=(), **extra) -> dict:
    row = {"format": "sclcoder-corrections/1", "note_id": note, "action": action, "coder": "t", "time": "x", **extra}
    if code:
        row["code"] = code
    row["spans"] = [{"begin": NOTES[note].index(s), "end": NOTES[note].index(s) + len(s), "text": s} for s in spans]
    return row


# ------------------------------------------------------------------------------------- the file, read back


@pytest.mark.parametrize(
    ("row", "field", "says"),
    [
        (_line("n9", "accept_code", "E11.9"), "note_id", "not in the notes file"),
        ({**_line("n1", "add_span", "E11.9"), "spans": [{"begin": 90, "end": 400, "text": "x"}]}, "spans", "outside"),
        ({**_line("n1", "add_span", "E11.9"), "spans": [{"begin": 0, "end": 7, "text": "Pasient"}]}, "text", "reads"),
        (_line("n1", "add_code", "Q99.99", ["metformin"]), "code", "Q99.99"),
        ({**_line("n1", "done"), "final": None}, "final", "final codes"),
        ({**_line("n1", "accept_code", "E11.9"), "verdict": "yes"}, "verdict", "unknown key"),
    ],
    ids=["unknown note", "outside the text", "other words", "unknown code", "done without codes", "unknown key"],
)
def test_a_bad_corrections_line_is_one_error_naming_file_line_and_field(tmp_path, row, field, says) -> None:
    path = tmp_path / "c.jsonl"
    good = _line("n1", "accept_code", "E11.9", ["metformin"])
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(SclError) as err:
        list(read_corrections(path, NOTES, "icd10cm"))
    assert err.value.line == 2 and err.value.path == str(path)
    assert field in (err.value.field or "") and says in str(err.value)


def test_a_line_cut_by_a_crash_is_not_a_decision_and_later_lines_win(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    rows = [
        _line("n1", "accept_code", "E11.9", ["metformin"]),
        _line("n1", "reject_code", "R07.9", ["Chest pain"]),
        _line("n1", "accept_code", "R07.9", ["Chest pain"]),  # changed their mind: accepted after all
        _line("n1", "reject_span", "E11.9", ["metformin"]),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps(rows[0])[:40])
    read = [c for _, c in read_corrections(path, NOTES, "icd10cm")]
    assert len(read) == 4
    review = reduce_corrections(read)["n1"]
    assert {c: r.status for c, r in review.codes.items()} == {"E11.9": "accepted", "R07.9": "accepted"}
    assert review.codes["E11.9"].evidence() == []  # its one quote was dropped
    assert review.codes["R07.9"].negatives  # once rejected there: not a hard negative any more (status wins)


# ---------------------------------------------------------------------------------- corrections -> examples


def test_corrections_become_span_hard_negative_and_document_examples(tmp_path, tiny_model) -> None:
    from sclcoder.recipe import load_recipe
    from sclcoder.sft.build import build_dataset

    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in NOTES.items()))
    corrections = tmp_path / "c.jsonl"
    rows = [
        _line("n1", "accept_code", "E11.9", ["type 2 diabetes mellitus"]),
        _line("n1", "reject_code", "R07.9", ["Chest pain"]),
        _line("n2", "accept_code", "N17.9", ["Acute kidney failure"]),
        _line("n2", "reject_code", "R50.9", ["fever"]),
        _line("n2", "add_code", "E86.0", ["treated with fluids"]),
        _line("n2", "done", final=[{"code": "N17.9", "spans": []}, {"code": "E86.0", "spans": []}]),
    ]
    corrections.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "model": {"model_name_or_path": str(tiny_model)},
        "windows": {"max_tokens": 256, "overlap_tokens": 32},
        "data": {
            "train": [{"corrections": {"file": str(corrections), "notes": str(notes)}}],
            "validation_fraction": 0.0,
            "span": {"context": "sentences", "context_size": 0, "negative_rate": 0.0},
            "synthesis": {"offline_fallback": False},
        },
        "train": {"output_dir": str(tmp_path / "run")},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = build_dataset(load_recipe(tmp_path / "r.yaml"), tmp_path / "ds")
    from datasets import load_from_disk

    got = sorted(
        (r["kind"], r["source"], tuple(r["codes"]), r["origin"])
        for r in load_from_disk(str(tmp_path / "ds" / "hf"))["train"]
    )
    # by hand, one sentence per window: n1 keeps E11.9 (its sentence: one span example) and drops R07.9 (a hard
    # negative on "Chest pain resolved.", nothing kept there); n2 keeps N17.9 and the added E86.0 (one sentence
    # holds both quotes: one span example), drops R50.9 ("Denies fever.") and is done: one document window
    n2_window_codes = ("N17.9", "E86.0")
    assert got == sorted(
        [
            ("span", "n1", ("E11.9",), "coder"),
            ("hard_negative", "n1", (), "coder"),
            ("span", "n2", n2_window_codes, "coder"),
            ("hard_negative", "n2", (), "coder"),
            ("document", "n2", n2_window_codes, "coder"),
        ]
    )
    texts = {r["kind"] + r["source"]: r for r in load_from_disk(str(tmp_path / "ds" / "hf"))["train"]}
    assert texts["hard_negativen1"]["text"] == "Chest pain resolved." and texts["documentn2"]["text"] == NOTES["n2"]
    assert texts["spann2"]["text"] == NOTES["n2"].split(" Denies")[0]
    fixed = result.stats["corrections"]
    assert (fixed["notes"], fixed["done"], fixed["decisions"], fixed["codes_kept"], fixed["codes_rejected"]) == (
        2,
        1,
        6,
        3,
        2,
    )


# ------------------------------------------------------------------------------------------- the app


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"x-sclcoder-token": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _start(preds: Path, notes: Path, port: int, token: str) -> subprocess.Popen:
    env = {**os.environ, "SCLCODER_REVIEW_TOKEN": token}
    cmd = [sys.executable, "-m", "sclcoder.cli", "review", str(preds), "--notes", str(notes), "--coder", "ana"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _get(f"http://127.0.0.1:{port}/api/queue", token)[0] == 200:
                return proc
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "review exited")
    raise AssertionError("review server did not come up")


def test_session_queue_and_concurrent_tabs(review_files) -> None:
    """Two tabs deciding at once append whole lines; the queue puts the least sure note first."""
    from sclcoder.review.session import Decision, ReviewSession

    notes, preds = review_files
    session = ReviewSession(preds, notes, coder="ana")
    try:
        assert [q["id"] for q in session.queue()] == ["n2", "n1", "n3"]  # least confidence 0.1, 0.2, none
        with pytest.raises(SclError, match="another sclcoder process"):
            ReviewSession(preds, notes, coder="bob")
        decisions = [
            ("n1", Decision(action="accept_code", code="E11.9")),
            ("n2", Decision(action="reject_code", code="R50.9")),
        ]
        threads = [threading.Thread(target=session.decide, args=d) for d in decisions * 20]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(SclError, match=r"not evidence of E11\.9"):
            session.decide("n1", Decision(action="accept_span", code="E11.9", begin=0, end=7))
    finally:
        session.close()
    lines = session.corrections.read_text().splitlines()
    assert len(lines) == 40 and all(json.loads(line)["coder"] == "ana" for line in lines)
    assert [q["id"] for q in ReviewSession(preds, notes).queue()][-1] == "n3"  # reopened: resumes


def test_a_coder_reviews_in_a_real_browser_and_nothing_acknowledged_is_lost(review_files, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium()  # skips, with the reason, where chromium is missing
    notes, preds = review_files
    port, token = free_port(), "test-token-123"
    try:
        server = _start(preds, notes, port, token)
    except BaseException:
        browser.quit()
        raise
    wait = WebDriverWait(browser, 20)
    saved = []

    def acknowledged(what: str) -> None:
        wait.until(lambda b: b.find_element(By.ID, "status").text == f"saved: {what}")
        saved.append(what)

    def code_box(code: str):  # type: ignore[no-untyped-def]
        return browser.find_element(By.CSS_SELECTOR, f'.code[data-code="{code}"]')

    try:
        # without the token: refused, the page itself included
        assert _get(f"http://127.0.0.1:{port}/")[0] == 403
        assert _get(f"http://127.0.0.1:{port}/api/notes/n1", "wrong")[0] == 403
        browser.get(f"http://127.0.0.1:{port}/?token={token}")
        # the note and the queue render from separate requests: wait for both before reading either
        wait.until(
            lambda b: b.find_elements(By.CSS_SELECTOR, ".code") and b.find_elements(By.CSS_SELECTOR, "#notes a.sel")
        )
        assert browser.find_element(By.CSS_SELECTOR, "#notes a.sel").get_attribute("data-id") == "n2"  # least sure
        code_box("N17.9").find_element(By.CSS_SELECTOR, 'button[data-act="accept_code"]').click()
        acknowledged("accept_code N17.9")
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("j")  # keyboard: next code, reject it
        body.send_keys("r")
        acknowledged("reject_code R50.9")
        # re-highlight: select words of the note, then replace the code's evidence with them
        wanted = "Acute kidney failure with creatinine rise"
        browser.execute_script(
            """const [text, wanted] = arguments; const spans = [...document.querySelectorAll('#text [data-b]')];
            const start = spans.find(s => s.textContent.includes('Acute'));
            const end = spans.find(s => s.textContent.includes('creatinine'));
            const r = document.createRange();
            r.setStart(start.firstChild, 0);
            r.setEnd(end.firstChild, end.textContent.indexOf('rise') + 4);
            getSelection().removeAllRanges(); getSelection().addRange(r);""",
            NOTES["n2"],
            wanted,
        )
        assert browser.execute_script("return getSelection().toString()") == wanted
        code_box("N17.9").find_element(By.CSS_SELECTOR, 'button[data-act="replace_span"]').click()
        acknowledged("replace_span N17.9")
        # a missed code, found by words
        search = browser.find_element(By.ID, "search")
        search.send_keys("dehydration")
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, '#results div[data-code="E86.0"]'))
        browser.find_element(By.CSS_SELECTOR, '#results div[data-code="E86.0"]').click()
        acknowledged("add_code E86.0")
        browser.find_element(By.ID, "done").click()
        acknowledged("done")
        assert "done" in browser.find_element(By.CSS_SELECTOR, '#notes a[data-id="n2"]').get_attribute("class")
    finally:
        browser.quit()
        server.send_signal(signal.SIGKILL)  # a crash, not a shutdown
        server.wait()

    lines = [json.loads(x) for x in (tmp_path / "notes.predictions.corrections.jsonl").read_text().splitlines()]
    spans = lambda row: [s["text"] for s in row["spans"]]  # noqa: E731
    assert [(r["action"], r.get("code"), spans(r)) for r in lines] == [
        ("accept_code", "N17.9", ["Acute kidney failure"]),
        ("reject_code", "R50.9", ["fever"]),
        ("reject_span", "N17.9", ["Acute kidney failure"]),
        ("add_span", "N17.9", [wanted]),
        ("add_code", "E86.0", []),
        ("done", None, []),
    ]
    assert lines[-1]["final"] == [
        {"code": "N17.9", "spans": [{"begin": 0, "end": len(wanted), "text": wanted}]},
        {"code": "E86.0", "spans": []},
    ]
    assert {(r["note_id"], r["coder"], r["adapter"]) for r in lines} == {("n2", "ana", "/runs/a/adapter")}
    assert len(saved) == 5 and len(lines) == 6  # replace = drop the old quote + add the new one, one acknowledgement
    # started again on the same file: where the coder stopped
    server = _start(preds, notes, port, token)
    try:
        status, note = _get(f"http://127.0.0.1:{port}/api/notes/n2", token)
        assert status == 200 and note["done"]
        assert {c["code"]: c["status"] for c in note["codes"]} == {
            "N17.9": "accepted",
            "R50.9": "rejected",
            "E86.0": "accepted",
        }
        assert _get(f"http://127.0.0.1:{port}/api/queue", token)[1]["notes"][-1]["id"] == "n2"  # done: last
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


# ------------------------------------------------------------------------------------------ train --from


def test_train_from_continues_the_parent_and_records_its_lineage(
    tmp_path, tiny_model, tiny_adapter, demo_corpus
) -> None:
    """The child's first loss is the parent's loss on the same batch (a fresh LoRA would score as the base model
    does); half its examples are the parent's own; its record names the parent and the corrections by digest."""
    import hashlib

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from sclcoder.artifacts import open_adapter, open_dataset
    from sclcoder.cli import app
    from sclcoder.data.corpus_folder import read_demo
    from sclcoder.recipe import load_recipe
    from sclcoder.train.trainer import build_trainer
    from tests.helpers import tiny_recipe

    docs = read_demo(demo_corpus, split="test")[:2]
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    rows = []
    for d in docs:
        for code, evs in list(d.evidence_by_code().items())[:2]:
            spans = [{"begin": e.begin, "end": e.end, "text": d.quote(e)} for e in evs[:2]]
            rows.append({"note_id": d.id, "action": "accept_code", "code": code, "spans": spans, "coder": "t"})
    corrections = tmp_path / "c.jsonl"
    corrections.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, name="child", max_steps=1, per_device_train_batch_size=64)
    recipe = yaml.safe_load(path.read_text())
    recipe["data"].update(
        train=[{"corrections": {"file": str(corrections), "notes": str(notes)}}], validation=[], validation_fraction=0.0
    )
    recipe["parent"] = {"adapter": "set by --from", "replay": 0.5}
    path.write_text(yaml.safe_dump(recipe))

    result = CliRunner().invoke(app, ["train", str(path), "--from", str(tiny_adapter)])
    assert result.exit_code == 0, result.output
    child = open_adapter(tmp_path / "child")
    parent = open_adapter(tiny_adapter)
    assert child.record.parent is not None and child.record.parent["adapter"] == str(parent.path.resolve())
    assert child.record.parent["recipe_sha256"] == parent.record.recipe_sha256
    assert child.record.corrections[0]["sha256"] == hashlib.sha256(corrections.read_bytes()).hexdigest()
    assert child.record.corrections[0]["decisions"] == len(rows)
    ds = open_dataset(tmp_path / "child" / "dataset")
    origins = [r["origin"] for r in ds.load()["train"]]
    assert origins.count("replay") == origins.count("coder") > 0  # replay 0.5: as many of the parent's as new ones
    assert child.record.train_examples == len(origins) <= 64  # so step 1 saw every example: one batch

    # the same batch, scored by the parent loaded on its own, and by the base model a fresh LoRA would start as
    loaded = load_recipe(path, [f"parent.adapter={tiny_adapter}"])
    trainer = build_trainer(loaded, ds)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels") if k in batch}
    with torch.no_grad():
        base_loss = base(**inputs).loss.item()
        parent_loss = PeftModel.from_pretrained(base, str(parent.path)).eval()(**inputs).loss.item()
    first = child.record.loss_history[0]["loss"]
    assert first == pytest.approx(parent_loss, abs=2e-3) and abs(first - base_loss) > 0.05, (
        first,
        parent_loss,
        base_loss,
    )
