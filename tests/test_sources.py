"""Data sources: readers per format, encodings, named formats, bounds, and the bad-input
matrix (each a clear error naming file/line/column, raised when the run opens, nothing stored)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli
from loop.config import SourceSettings
from loop.problems import ProposeError
from loop.problems.readers import read_table
from loop.problems.readers.base import ReadOptions
from loop.problems.readers.encoding import decode
from loop.problems.seeds import source_conversations, source_problems
from loop.problems.sources import validate_sources
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "data"
ZH = "我最近总是感觉头晕，应该怎么办？高血压患者能吃党参吗"
TW = "我最近總是感覺頭暈，應該怎麼辦？高血壓患者能吃黨參嗎"


def src(path, **kw) -> SourceSettings:
    return SourceSettings(kind="file", path=str(path), **kw)


# --- encodings -----------------------------------------------------------------------
@pytest.mark.parametrize("data, expected", [
    (ZH.encode("utf-8"), "utf-8"),                          # plain UTF-8
    (b"\xef\xbb\xbf" + ZH.encode("utf-8"), "utf-8-sig"),    # UTF-8 with BOM
    (ZH.encode("utf-16"), "utf-16"),                        # UTF-16 with BOM
    (ZH.encode("gbk"), "gb18030"),                          # GBK (simplified) -> gb18030, its superset
    (ZH.encode("gb2312"), "gb18030"),                       # GB2312 likewise
    ("㐀䶵".encode("gb18030") + ZH.encode("gb18030"), "gb18030"),  # GB18030-only 4-byte chars
    (TW.encode("big5"), "big5"),                            # Big5 (traditional): GB18030 reading is rare chars
    (b"plain ascii", "utf-8"),                              # ASCII is UTF-8
])
def test_encoding_detected_and_named(tmp_path, data, expected):
    text, enc = decode(data, tmp_path / "f.csv")
    assert enc == expected
    assert text.lstrip("\ufeff") in (ZH, TW, "plain ascii") or text.endswith(ZH)


def test_gbk_that_also_decodes_as_big5_stays_gb18030(tmp_path):
    data = ZH.encode("gbk")
    try:  # the ambiguity the rule is for: these bytes may be valid Big5 too
        data.decode("big5")
    except UnicodeDecodeError:
        pass
    assert decode(data, tmp_path / "f")[1] == "gb18030"


def test_undecodable_names_file_and_byte_offset(tmp_path):
    with pytest.raises(ProposeError) as e:
        decode(b"ok\n\xff\xff\xff\xff", tmp_path / "bad.csv")
    msg = str(e.value)
    assert "bad.csv" in msg and "byte offset 3" in msg and "utf-8" in msg and "big5" in msg


def test_encoding_override_is_strict(tmp_path):
    with pytest.raises(ProposeError, match="cannot decode as utf-8 \\(byte offset 0"):
        decode(ZH.encode("gbk"), tmp_path / "f", "utf-8")
    assert decode(ZH.encode("gbk"), tmp_path / "f", "gbk") == (ZH, "gbk")


# --- readers and formats ---------------------------------------------------------------
def _write_xlsx(path, rows):
    import openpyxl
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    wb.save(path)


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_every_reader_gives_the_same_problems(tmp_path):
    rows = [{"question": f"What is {i}+1?", "answer": f"{i}+1 = {i + 1}\n#### {i + 1}"} for i in range(3)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "a.csv").write_text("question,answer\n" + "".join(f'"{r["question"]}","{r["answer"]}"\n' for r in rows))
    (tmp_path / "a.tsv").write_text("question\tanswer\n" + "".join(
        f'{r["question"]}\t"{r["answer"]}"\n' for r in rows))
    _write_xlsx(tmp_path / "a.xlsx", [["question", "answer"], *[[r["question"], r["answer"]] for r in rows]])
    _write_parquet(tmp_path / "a.parquet", rows)
    import datasets
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    for name in ("a.jsonl", "a.json", "a.csv", "a.tsv", "a.xlsx", "a.parquet", "hf"):
        got = source_problems(src(tmp_path / name))
        assert [p.answer for p in got] == ["1", "2", "3"], name
        assert got[0].question == "What is 0+1?" and got[0].meta["file"].endswith(name.split("#")[0]), name


@pytest.mark.parametrize("row, kw, question, answer", [
    ({"problem": "Solve x+1=3", "solution": "So $\\boxed{2}$."}, {"format": "math"}, "Solve x+1=3", "2"),
    ({"problem": "p", "solution": "\\boxed{\\frac{1}{2}}"}, {"format": "math"}, "p", "\\frac{1}{2}"),  # nested
    ({"q": "How many?", "a": "7"}, {"format": "plain", "question_field": "q", "answer_field": "a"},
     "How many?", "7"),                                                          # field mapping, plain
    ({"q": "Q", "a": "x \\boxed{5}"}, {"question_field": "q", "answer_field": "a", "answer_format": "boxed"},
     "Q", "5"),                                                                  # gsm8k fields, boxed answers
    ({"question": "Q", "answer": "so #### 1,234"}, {}, "Q", "1234"),            # gsm8k default, commas dropped
])
def test_problem_formats(tmp_path, row, kw, question, answer):
    (tmp_path / "f.jsonl").write_text(json.dumps(row))
    p = source_problems(src(tmp_path / "f.jsonl", **kw))[0]
    assert (p.question, p.answer) == (question, answer)


@pytest.mark.parametrize("row, fmt, system, expected", [
    ({"instruction": "Add", "input": "1 2", "output": "3"}, "alpaca", None,
     [("user", "Add\n\n1 2"), ("assistant", "3")]),                              # alpaca with input
    ({"instruction": "Hi", "input": "", "output": "Hello", "system": "Be kind",
      "history": [["a", "b"]]}, "alpaca", "ignored",
     [("system", "Be kind"), ("user", "a"), ("assistant", "b"), ("user", "Hi"), ("assistant", "Hello")]),
    ({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "v"}]}, "messages", "S",
     [("system", "S"), ("user", "u"), ("assistant", "v")]),                      # OpenAI roles + source system
    ({"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "v"}]}, "messages", None,
     [("user", "u"), ("assistant", "v")]),                                       # ShareGPT roles
    ({"department": "心血管科", "title": "t", "ask": "问", "answer": "答"}, "medical", None,
     [("user", "问"), ("assistant", "答")]),                                      # medical
    ({"department": "d", "title": "标题", "ask": "", "answer": "答"}, "medical", None,
     [("user", "标题"), ("assistant", "答")]),                                    # empty ask: the title
])
def test_conversation_formats(tmp_path, row, fmt, system, expected):
    (tmp_path / "f.jsonl").write_text(json.dumps(row, ensure_ascii=False))
    conv = source_conversations(src(tmp_path / "f.jsonl", format=fmt, system=system))[0]
    assert [(m["role"], m["content"]) for m in conv["messages"]] == expected
    assert conv["meta"]["line"] == 1 and conv["meta"]["encoding"] == "utf-8"


def test_medical_department_folders_read_as_one_source(tmp_path):
    for dept, enc in (("IM_内科", "gbk"), ("Surgical_外科", "utf-8")):
        (tmp_path / "Data" / dept).mkdir(parents=True)
        (tmp_path / "Data" / dept / "a.csv").write_bytes(
            f"department,title,ask,answer\n{dept[-2:]},标题,{ZH},多喝水\n".encode(enc))
    convs = source_conversations(src(tmp_path / "Data", format="medical"))
    assert [c["meta"]["dept_folder"] for c in convs] == ["IM_内科", "Surgical_外科"]
    assert [c["meta"]["encoding"] for c in convs] == ["gb18030", "utf-8"]  # per file, per row
    assert convs[0]["meta"]["department"] == "内科" and convs[0]["messages"][0]["content"] == ZH


def test_bounds_special_file_and_long_field(tmp_path):
    with pytest.raises(ProposeError, match="not a regular file"):
        read_table("/dev/zero", "jsonl")                    # never read forever
    (tmp_path / "big.jsonl").write_text(json.dumps({"question": "x" * 5000, "answer": "#### 1"}))
    with pytest.raises(ProposeError, match="big.jsonl:1: line is .* over the limit of 2048"):
        read_table(tmp_path / "big.jsonl", "jsonl", ReadOptions(max_field_bytes=2048))
    (tmp_path / "big.csv").write_text("question,answer\n" + "y" * 5000 + ",1\n")
    with pytest.raises(ProposeError, match="big.csv:2: field 'question' is 5000 bytes"):
        read_table(tmp_path / "big.csv", "csv", ReadOptions(max_field_bytes=2048))


# --- the bad-input matrix: library and `loop start` ------------------------------------------
def _bad_csv(d):
    (d / "bad.csv").write_text("question,answer\nq1,\"a #### 1\"\nq2,a,#### 2\nq3,\"a #### 3\"\n")
    return d / "bad.csv", {}


def _mixed(d):
    (d / "mixed.csv").write_bytes(("question,answer\n" + ZH + ",#### 1\n").encode("utf-8")
                                  + (ZH + ",#### 2\n").encode("gbk"))
    return d / "mixed.csv", {}


def _missing_column(d):
    (d / "cols.csv").write_text("prompt,answer,level\nq,#### 1,2\n")
    return d / "cols.csv", {}


def _empty(d):
    (d / "empty.jsonl").write_text("")
    return d / "empty.jsonl", {}


def _xlsx_no_header(d):
    _write_xlsx(d / "nohead.xlsx", [["What is 1+1?", 2], ["What is 2+2?", 4]])
    return d / "nohead.xlsx", {}


def _dir_no_data(d):
    (d / "folder" / "IM_内科").mkdir(parents=True)
    (d / "folder" / "IM_内科" / "notes.txt").write_text("hi")
    return d / "folder", {"format": "medical"}


def _not_object(d):
    (d / "lines.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n["q", "#### 2"]\n')
    return d / "lines.jsonl", {}


def _unclosed_quote(d):
    (d / "quote.csv").write_text('question,answer\nq1,"#### 1\nq2,#### 2\n')
    return d / "quote.csv", {}


BAD = [
    (_bad_csv, ["bad.csv:3:", "3 fields, the header has 2 (question,answer)"]),   # a CSV broken at line 3
    (_mixed, ["mixed.csv", "mixed encodings: line 2 is UTF-8 but line 3 is not", "byte offset"]),
    (_missing_column, ["cols.csv", "column 'question' missing; columns present: prompt, answer, level"]),
    (_empty, ["empty.jsonl", "has no problems"]),                                 # an empty file
    (_xlsx_no_header, ["nohead.xlsx:1", "no header row: cell B1 is 2"]),              # Excel sheet without header
    (_dir_no_data, ["folder", "no data files (*.csv)", "IM_内科"]),               # a folder without data files
    (_not_object, ["lines.jsonl:2: expected a JSON object, got list"]),           # a JSONL line not an object
    (_unclosed_quote, ["quote.csv:2: malformed CSV", "starting on line 2"]),      # a quote never closed
]


@pytest.mark.parametrize("make, needles", BAD, ids=[m.__name__.strip("_") for m, _ in BAD])
def test_bad_input_named_by_validate(tmp_path, make, needles):
    path, kw = make(tmp_path)
    with pytest.raises(ProposeError) as e:
        validate_sources([src(path, **kw)])
    assert all(n in str(e.value) for n in needles), str(e.value)


@pytest.mark.parametrize("make, needles", BAD[:4] + BAD[6:7], ids=["csv", "mixed", "column", "empty", "object"])
@pytest.mark.parametrize("daemon", [[], ["--daemon", "--every", "1h"]])  # foreground; detached
def test_bad_input_fails_loop_start_before_anything_is_written(tmp_path, make, needles, daemon):
    path, kw = make(tmp_path)
    source = json.dumps([{"kind": "file", "path": str(path), "count": 2, **kw}])
    res = CliRunner().invoke(cli.app, ["start", "--rounds", "1", "-c", str(ROOT / "configs" / "tiny.yaml"), *daemon,
                                       "--set", f"run.dir={tmp_path / 'run'}", "--set", f"propose.sources={source}"])
    assert res.exit_code == 2 and needles[-1] in res.output, res.output
    assert not (tmp_path / "run" / "loop.duckdb").exists()  # checked when the run opens: no store


# --- the real files in ../shared/data -------------------------------------------------------
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared test data not present")


@needs_data
@pytest.mark.parametrize("path, kw, rows, encoding", [
    ("alpaca/alpaca_en_demo.json", {"format": "alpaca"}, 999, "utf-8"),       # Alpaca English, a JSON array
    ("alpaca/alpaca_zh_demo.json", {"format": "alpaca"}, 1000, "utf-8"),      # Alpaca Chinese
    ("medical/Data_数据", {"format": "medical"}, 7644, "gb18030"),            # GBK CSV, department layout
    ("gsm8k/train.jsonl", {"format": "gsm8k"}, 7473, "utf-8"),                # GSM8K train
])
def test_real_files(path, kw, rows, encoding):
    (info,) = validate_sources([src(DATA / path, **kw)], chat=kw["format"] != "gsm8k")
    assert info["rows"] == rows and {f["encoding"] for f in info["files"]} == {encoding}
    assert all(len(f["sha256"]) == 64 for f in info["files"])


@needs_data
def test_real_medical_rows():
    convs = source_conversations(src(DATA / "medical" / "Data_数据", format="medical"))
    first = convs[0]
    assert first["meta"]["department"] == "心血管科" and first["meta"]["dept_folder"] == "IM_内科"
    assert "党参" in first["messages"][0]["content"] and first["meta"]["line"] == 2
