"""`make rules`: the exporter refuses broken rules with a message naming the file and the fault,
and writes one Kibana rule object per line for the rest."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(RULES))
import export  # noqa: E402

GOOD = (RULES / "llm01_prompt_injection_attempt.toml").read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('severity = "medium"', 'severity = "severe"'), "severity 'severe'"),
    (lambda s: s.replace("risk_score = 47", "risk_score = 90"), "does not fit severity medium"),
    (lambda s: s.replace('"OWASP LLM: LLM01",\n    "OWASP LLM 2025: LLM01",\n', ""), "OWASP LLM id"),
    (lambda s: s.replace("| WHERE event.dataset", "| WERE event.dataset"), "ES|QL syntax"),
    (lambda s: s.replace('type = "esql"', 'type = "query"'), "must be \"esql\""),
    (lambda s: s.replace('rule_id = "7c659bdc', 'rule_id = "x7c659bdc'), "is not a UUID"),
    (lambda s: s.replace("risk_score = 47", "risk_score = 47\nrisk_scroe = 47"), "unknown rule fields risk_scroe"),
    (lambda s: s.replace('interval = "5m"\n', ""), "missing rule fields interval"),
])
def test_broken_rules_are_refused_with_the_reason(tmp_path, edit, message):
    path = tmp_path / "broken.toml"
    path.write_text(edit(GOOD))
    assert edit(GOOD) != GOOD, "the edit must change the rule"
    with pytest.raises(export.RuleError, match=message.replace("|", r"\|").replace("(", r"\(")) as e:
        export.load(path)
    assert "broken.toml" in str(e.value)


def test_duplicate_rule_ids_are_refused(tmp_path):
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text(GOOD)
    with pytest.raises(export.RuleError, match="duplicate rule_id"):
        export.load_all(tmp_path)


def test_make_rules_writes_kibana_import_ndjson(tmp_path):
    out = tmp_path / "rules.ndjson"
    subprocess.run([sys.executable, str(RULES / "export.py"), "--out", str(out)], check=True, capture_output=True)
    rules = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rules) == len(list(RULES.glob("*.toml")))
    for rule in rules:
        assert rule["type"] == rule["language"] == "esql"
        assert {"rule_id", "name", "description", "query", "risk_score", "severity", "threat"} <= rule.keys()
        assert "index" not in rule, "ES|QL rules name their indices in the query"
        assert rule["enabled"] is False and rule["version"] == 1
