"""`reader: hub`: a Hugging Face dataset by hub name, read from the local datasets cache only.

The cache is built in a temporary folder the way a hub download leaves it
(`owner___name/<config>/<version>/<hash>/` with Arrow files and dataset_info.json), from
local JSONL files through datasets' own Json builder; nothing is downloaded."""
from __future__ import annotations

import json
import shutil

import pytest

from loop.config import SourceSettings
from loop.problems import ProposeError
from loop.problems.seeds import source_problems
from loop.problems.sources import validate_sources


def _gsm_rows(n: int, start: int = 0) -> list[dict]:
    return [{"question": f"What is {i}+1?", "answer": f"{i}+1 = {i + 1}\n#### {i + 1}"} for i in range(start, start + n)]


def _cache_dataset(cache, repo_id: str, config: str, splits: dict[str, list[dict]]) -> None:
    """Prepare `repo_id`/`config` into `cache` as a hub download would have."""
    from datasets.packaged_modules.json.json import Json

    files = {}
    for split, rows in splits.items():
        f = cache.parent / f"{repo_id.replace('/', '_')}-{config}-{split}.jsonl"
        f.write_text("\n".join(json.dumps(r) for r in rows))
        files[split] = str(f)
    name = repo_id.split("/")[-1]
    b = Json(cache_dir=str(cache), dataset_name=name, repo_id=repo_id, config_name=config, hash="0123abc",
             data_files=files)
    b.download_and_prepare()
    root = cache / repo_id.replace("/", "___")
    # A local build names its config dir `<config>-<data files hash>`; a hub download names it `<config>`.
    (built,) = [d for d in root.iterdir() if d.is_dir() and d.name.startswith(config + "-")]
    shutil.move(str(built), str(root / config))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "datasets"
    cache.mkdir(parents=True)
    _cache_dataset(cache, "someone/tiny_gsm", "main", {"train": _gsm_rows(6), "test": _gsm_rows(3, start=100)})
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    return cache


def hub(name: str, **kw) -> SourceSettings:
    return SourceSettings(kind="file", reader="hub", path=name, **kw)


@pytest.mark.parametrize("subset, split, answers", [
    ("main", "train", ["1", "2", "3", "4", "5", "6"]),  # the train split
    ("main", "test", ["101", "102", "103"]),           # another split of the same config
    (None, "test", ["101", "102", "103"]),             # no subset: the one cached config
])
def test_hub_dataset_read_from_cache(hub_cache, subset, split, answers):
    got = source_problems(hub("someone/tiny_gsm", subset=subset, split=split))
    assert [p.answer for p in got] == answers


@pytest.mark.parametrize("name, subset, split, needles", [
    ("someone/absent", None, "train", ["'someone/absent'", "not in the local datasets cache"]),  # never cached
    ("someone/tiny_gsm", "main", "validation", ["split validation", "validation"]),             # no such split
    ("someone/tiny_gsm", "socratic", "train", ["subset socratic", "socratic"]),                 # no such config
])
def test_hub_dataset_not_cached_names_it_and_the_cache(hub_cache, name, subset, split, needles):
    with pytest.raises(ProposeError) as e:
        source_problems(hub(name, subset=subset, split=split))
    msg = str(e.value)
    assert str(hub_cache) in msg and all(n in msg for n in needles), msg


def test_hub_source_validated_with_provenance(hub_cache):
    (info,) = validate_sources([hub("someone/tiny_gsm", subset="main", split="test")])
    assert info["reader"] == "hub" and info["rows"] == 3
    assert info["files"][0]["encoding"] == "arrow" and len(info["files"][0]["sha256"]) == 64


def test_hub_name_without_reader_hub_hints_at_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProposeError, match="set `reader: hub`"):
        source_problems(SourceSettings(kind="file", path="someone/tiny_gsm"))
