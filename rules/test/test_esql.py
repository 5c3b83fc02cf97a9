"""The evaluator's own semantics, on hand-made rows: where it must agree with Elasticsearch for
the rules' verdicts to mean anything."""

from datetime import datetime, timedelta, timezone

import pytest

import esql

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def doc(minutes_ago=1, **fields):
    out = {"_index": "logs-sluice.filter-default", "@timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat()}
    for dotted, value in fields.items():
        node = out
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


DOCS = [
    doc(user__id="a", sluice__detections=["pii", "secrets"], n=1),
    doc(user__id="a", sluice__detections=["pii"], n=2),
    doc(user__id="b", sluice__detections=[], n=3),
    doc(minutes_ago=30, user__id="b", sluice__detections=["prompt_injection"], n=4),
]


def run(q):
    return esql.run(q, DOCS, now=NOW)


def test_syntax_errors_are_reported():
    assert esql.syntax_errors("FROM logs | WHERE a == 1") == []
    assert esql.syntax_errors("FROM logs | WHRE a == 1")
    with pytest.raises(esql.EsqlError, match="syntax"):
        esql.parse("FROM logs | WHERE a = = 1")


def test_multivalued_comparison_is_null_until_expanded():
    assert run('FROM logs-* | WHERE sluice.detections == "pii" | KEEP n') == [{"n": 2}]
    rows = run('FROM logs-* | MV_EXPAND sluice.detections | WHERE sluice.detections == "pii" | KEEP n')
    assert rows == [{"n": 1}, {"n": 2}]


def test_unknown_columns_and_indices_fail_like_elasticsearch():
    with pytest.raises(esql.EsqlError, match=r"Unknown column \[user.name\]"):
        run('FROM logs-* | WHERE user.name == "a"')
    with pytest.raises(esql.EsqlError, match="Unknown index"):
        run("FROM metrics-* | LIMIT 1")
    with pytest.raises(esql.EsqlUnsupported):
        run("FROM logs-* | DISSECT message \"%{a}\"")


def test_stats_by_with_time_window_and_null_logic():
    q = """FROM logs-* | WHERE @timestamp >= NOW() - 10 minutes
    | STATS c = COUNT(*), s = SUM(n), d = COUNT_DISTINCT(sluice.detections) BY user.id | SORT user.id"""
    assert run(q) == [{"c": 2, "s": 3, "d": 2, "user.id": "a"}, {"c": 1, "s": 3, "d": 0, "user.id": "b"}]
    assert run("FROM logs-* | STATS c = COUNT(*) BY sluice.detections | SORT c DESC, sluice.detections")[0] == \
        {"c": 2, "sluice.detections": "pii"}
    # NULL AND FALSE is FALSE, NULL OR TRUE is TRUE, NOT NULL is NULL.
    assert len(run("FROM logs-* | WHERE NOT (sluice.detections == \"x\" AND n > 100)")) == 4
    assert len(run("FROM logs-* | WHERE sluice.detections == \"x\" OR n > 2")) == 2
    assert run("FROM logs-* | WHERE NOT (sluice.detections == \"x\") | KEEP n") == [{"n": 2}, {"n": 4}]


def test_eval_case_coalesce_sort_and_limit():
    q = """FROM logs-* | EVAL k = CASE(n > 2, "big", "small"), z = COALESCE(nothing_here, n * 10)
    | SORT n DESC | LIMIT 3 | KEEP n, k, z"""
    docs = DOCS + [doc(nothing_here=None, n=0)]
    with pytest.raises(esql.EsqlError, match="nothing_here"):
        esql.run(q, docs, now=NOW)  # a field that is null everywhere is not mapped either
    q = q.replace("nothing_here", "user.id")
    rows = esql.run(q, DOCS, now=NOW)
    assert rows == [{"n": 4, "k": "big", "z": "b"}, {"n": 3, "k": "big", "z": "b"}, {"n": 2, "k": "small", "z": "a"}]


def test_sort_puts_nulls_last_ascending_and_first_descending():
    docs = DOCS + [doc(user__id="c")]
    asc = esql.run("FROM logs-* | SORT n | KEEP n", docs, now=NOW)
    desc = esql.run("FROM logs-* | SORT n DESC | KEEP n", docs, now=NOW)
    assert [r["n"] for r in asc] == [1, 2, 3, 4, None]
    assert [r["n"] for r in desc] == [None, 4, 3, 2, 1]


def test_like_concat_and_comments():
    q = """FROM logs-* // the rules match names in a comma-joined list of detections
    | EVAL d = CONCAT(",", MV_CONCAT(sluice.detections, ","), ",")
    | WHERE d LIKE "*,pii,*" | KEEP n"""
    assert run(q) == [{"n": 1}, {"n": 2}]
    # LIKE on a multi-valued field is null, as comparisons are.
    assert run('FROM logs-* | WHERE sluice.detections LIKE "p*" | KEEP n') == [{"n": 2}, {"n": 4}]
