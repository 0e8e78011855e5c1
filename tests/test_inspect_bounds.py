"""`inspect --limit` and `inspect sql` are bounded (issue 21): a row cap, a statement
timeout, a memory limit; each case ends with a clear error, not a stuck or swollen process."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli
from loop import inspection
from loop.inspection import InspectError
from tests import storefix

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "s.duckdb"
    storefix.populate(path)
    return path


# (CLI args after `inspect --store S`, text the output must contain)
BAD_CLI = [
    (["samples", "--limit", "100000000"], "--limit"),                          # a row cap above 10000
    (["problems", "--limit", "99999999999999999999"], "--limit"),
    (["sql", "SELECT 1", "--limit", "1000000"], "--limit"),
]


@pytest.mark.parametrize("args,needle", BAD_CLI, ids=[a[0] + " " + a[-1] for a, _ in BAD_CLI])
def test_limits_above_the_cap_are_refused(store, args, needle):
    res = runner.invoke(cli.app, ["inspect", "--store", str(store), *args])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("fn,kwargs", [
    (inspection.samples, {"limit": 10**9}),                                    # the library bounds it too
    (inspection.problems, {"limit": 0}),
    (inspection.sql, {"query": "SELECT 1", "limit": 10**9}),
])
def test_library_limits_are_bounded(store, fn, kwargs):
    with pytest.raises(InspectError, match="--limit"):
        fn(store, **kwargs)


def test_sql_statement_timeout(store):
    with pytest.raises(InspectError, match="statement timeout"):
        inspection.sql(store, "SELECT count(*) FROM range(1000000000000) a", timeout_s=1.0)


def test_sql_memory_limit(store):
    with pytest.raises(InspectError, match="(?i)memory"):
        inspection.sql(store, "SELECT string_agg(repeat('x', 1000), '') FROM range(5000000)", timeout_s=60)


def test_sql_row_cap_truncates(store):
    out = inspection.sql(store, "SELECT * FROM range(1000000)", limit=5)
    assert len(out["rows"]) == 5 and out["truncated"]
