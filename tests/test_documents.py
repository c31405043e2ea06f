from __future__ import annotations

import json
from pathlib import Path

import pytest

from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import (
    Document,
    Evidence,
    merge_adjacent_evidence,
    read_documents,
    trim_evidence,
    write_documents,
)
from sclcoder.errors import SclError, Skips


def _doc() -> Document:
    text = "Pt with T2DM and HTN, s/p intubation.\r\nDenies chest pain. Café visit."
    return Document(
        id="n1",
        text=text,
        codes={"E11.9", "I10", "5A1935Z"},
        code_system=CodeSystem.ICD10CM,
        evidence=[Evidence(8, 12, "E11.9", "mention"), Evidence(17, 20, "I10"), Evidence(26, 36, "5A1935Z")],
        meta={"hadm_id": 1, "nested": {"a": [1, 2]}},
    )


def test_jsonl_round_trip_is_lossless(tmp_path: Path) -> None:
    docs = [_doc(), Document(id="n2", text="no codes here", codes={"J18.9"})]
    path = tmp_path / "notes.jsonl"
    assert write_documents(path, docs) == 2
    back = list(read_documents(path))
    assert back == docs
    # and the file re-written from what was read is byte-identical
    write_documents(tmp_path / "again.jsonl", back)
    assert (tmp_path / "again.jsonl").read_bytes() == path.read_bytes()


def test_codes_are_normalised_on_read(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": 7,
                "text": "diabetes",
                "codes": ["e119"],
                "evidence": [{"begin": 0, "end": 8, "code": "E119", "quote": "diabetes"}],
            }
        )
        + "\n"
    )
    (doc,) = read_documents(path)
    assert doc.id == "7" and doc.codes == {"E11.9"} and doc.evidence == [Evidence(0, 8, "E11.9")]


def test_codes_default_to_the_evidenced_ones(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "HTN", "evidence": [{"begin": 0, "end": 3, "code": "I10"}]}))
    (doc,) = read_documents(path)
    assert doc.codes == {"I10"}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"id": "ok", "text": "HTN", "codes": ["I10"]})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "text": ', r"bad\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
        (json.dumps({"text": "a"}), r"bad\.jsonl:2: field 'id': missing"),
        (
            json.dumps(
                {
                    "id": "x",
                    "text": "abc",
                    "codes": ["E11.9"],
                    "evidence": [{"begin": 1, "end": 9, "code": "E11.9"}],
                }
            ),
            r"bad\.jsonl:2: field 'evidence\[0\]': offsets \[1, 9\) .* outside the text \(length 3\)",
        ),
        (
            json.dumps({"id": "x", "text": "abc", "codes": ["Z99.99"]}),
            r"bad\.jsonl:2: field 'codes\[0\]': unknown ICD-10-CM code 'Z99.99'",
        ),
        (json.dumps({"id": "x", "text": "abc", "codes": ["E1.19"]}), r"field 'codes\[0\]': malformed"),
        (
            json.dumps({"id": "x", "text": "abc", "hadm_id": 3}),
            r"field 'hadm_id': unknown field\(s\) hadm_id",
        ),
        (
            json.dumps(
                {
                    "id": "x",
                    "text": "abc",
                    "codes": ["I10"],
                    "evidence": [{"begin": 0, "end": 2, "code": "E11.9"}],
                }
            ),
            r"field 'evidence\[0\]': evidence code E11.9 is not among the note's codes",
        ),
        (
            json.dumps({"id": "x", "text": "abc", "evidence": [{"begin": 0, "end": 2, "code": "I10", "quote": "xx"}]}),
            r"field 'evidence\[0\].quote': text at \[0, 2\) is 'ab'",
        ),
        (json.dumps({"id": "ok", "text": "dup"}), r"duplicate id 'ok'"),
        (
            json.dumps({"id": "x", "text": "abc", "code_system": "snomed"}),
            r"field 'code_system': unknown code system",
        ),
    ],
)
def test_bad_lines_give_one_clear_error(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, GOOD, line, GOOD.replace('"ok"', '"ok2"'))
    with pytest.raises(SclError, match=message):
        list(read_documents(path))
    # the same file read with --skip-invalid keeps the good lines and counts the bad one
    skips = Skips(allowed=True)
    ids = [d.id for d in read_documents(path, skips=skips)]
    assert ids == ["ok", "ok2"]
    assert skips.count == 1 and "bad.jsonl:2" in skips.examples[0]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SclError, match=r"nope\.jsonl: JSONL file not found"):
        list(read_documents(tmp_path / "nope.jsonl"))


def test_trim_matches_mdace_definition() -> None:
    text = "dx: (diabetes), htn-/ and ((x"
    doc = Document(
        "d",
        text,
        {"E11.9", "I10", "J18.9"},
        evidence=[
            Evidence(4, 16, "E11.9"),  # "(diabetes), " -> the left "(" stays: only ")" is trimmed on the left
            Evidence(16, 22, "I10"),  # "htn-/ " -> "htn"
            Evidence(26, 28, "J18.9"),  # "((" trims to nothing on the right: dropped
        ],
    )
    out = trim_evidence(doc)
    assert [out.quote(e) for e in out.evidence] == ["(diabetes)", "htn"]


def test_merge_adjacent_only_same_code_across_connectors() -> None:
    text = "chronic kidney, disease; CKD x HTN"
    doc = Document(
        "d",
        text,
        {"N18.9", "I10"},
        evidence=[
            Evidence(0, 7, "N18.9"),
            Evidence(8, 14, "N18.9"),
            Evidence(16, 23, "N18.9"),  # merge into one
            Evidence(25, 28, "N18.9"),  # separated from the previous by "; " -> merges as well
            Evidence(31, 34, "I10"),
        ],
    )
    out = merge_adjacent_evidence(doc)
    assert [(out.quote(e), e.code) for e in out.evidence] == [
        ("chronic kidney, disease; CKD", "N18.9"),
        ("HTN", "I10"),
    ]
    # a letter in the gap, or another code's span in between, stops the merge
    doc2 = Document(
        "d",
        text,
        {"N18.9", "I10"},
        evidence=[Evidence(25, 28, "N18.9"), Evidence(29, 30, "I10"), Evidence(31, 34, "N18.9")],
    )
    assert len(merge_adjacent_evidence(doc2).evidence) == 3
