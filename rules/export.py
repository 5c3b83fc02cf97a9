#!/usr/bin/env python3
"""Checks Sluice's detection rules (rules/*.toml, elastic/detection-rules format) and writes them
as NDJSON for Kibana's rule import API (POST /api/detection_engine/rules/_import).

    python3 rules/export.py [--out build/sluice-rules.ndjson] [--check]

Each rule must be an ES|QL rule whose query parses with Elasticsearch's grammar, with a unique
UUID rule_id, a valid severity and risk score, and an "OWASP LLM: LLMxx" tag.
"""

import argparse
import json
import re
import sys
import tomllib
import uuid
from pathlib import Path

RULES = Path(__file__).resolve().parent
sys.path.insert(0, str(RULES / "test"))

import esql  # noqa: E402  (next to this file, not a package)

REQUIRED = ("name", "description", "rule_id", "risk_score", "severity", "type", "language", "query",
            "author", "license", "from", "interval", "tags", "false_positives", "note", "threat")
SEVERITIES = {"low": (0, 21), "medium": (22, 47), "high": (48, 73), "critical": (74, 100)}
OWASP_TAG = re.compile(r"^OWASP LLM: LLM(0[1-9]|10)$")
# Kibana's import schema knows these rule fields; anything else in [rule] is a typo.
KNOWN = set(REQUIRED) | {"references", "setup", "timestamp_override", "max_signals", "version",
                         "enabled", "building_block_type", "investigation_fields", "related_integrations",
                         "required_fields"}


class RuleError(Exception):
    pass


def load(path: Path) -> dict:
    """The Kibana rule object of one TOML file; raises RuleError saying what is wrong."""
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{path.name}: not TOML: {e}") from e
    if "metadata" not in doc or "rule" not in doc:
        raise RuleError(f"{path.name}: needs [metadata] and [rule] tables")
    rule = doc["rule"]
    missing = [f for f in REQUIRED if f not in rule]
    if missing:
        raise RuleError(f"{path.name}: missing rule fields {', '.join(missing)}")
    unknown = sorted(set(rule) - KNOWN)
    if unknown:
        raise RuleError(f"{path.name}: unknown rule fields {', '.join(unknown)}")
    if rule["type"] != "esql" or rule["language"] != "esql":
        raise RuleError(f"{path.name}: type and language must be \"esql\"")
    try:
        uuid.UUID(rule["rule_id"])
    except ValueError as e:
        raise RuleError(f"{path.name}: rule_id {rule['rule_id']!r} is not a UUID") from e
    lo, hi = SEVERITIES.get(rule["severity"], (None, None))
    if lo is None:
        raise RuleError(f"{path.name}: severity {rule['severity']!r} is not one of {', '.join(SEVERITIES)}")
    if not isinstance(rule["risk_score"], int) or not lo <= rule["risk_score"] <= hi:
        raise RuleError(f"{path.name}: risk_score {rule['risk_score']!r} does not fit severity "
                        f"{rule['severity']} ({lo}..{hi})")
    if not any(OWASP_TAG.match(t) for t in rule["tags"]):
        raise RuleError(f"{path.name}: tags need an OWASP LLM id, e.g. \"OWASP LLM: LLM01\"")
    errors = esql.syntax_errors(rule["query"])
    if errors:
        raise RuleError(f"{path.name}: ES|QL syntax: {'; '.join(errors)}")
    for threat in rule["threat"]:
        if not {"framework", "tactic"} <= threat.keys():
            raise RuleError(f"{path.name}: each [[rule.threat]] needs framework and tactic")
    out = dict(rule)
    # Hard-wrapped prose reads as one paragraph in Kibana; notes and setup stay markdown.
    out["description"] = " ".join(rule["description"].split())
    out["false_positives"] = [" ".join(f.split()) for f in rule["false_positives"]]
    for field in ("note", "setup"):
        if field in out:
            out[field] = out[field].strip()
    out["query"] = rule["query"].strip() + "\n"
    out.setdefault("version", 1)
    out.setdefault("max_signals", 100)
    # Imported disabled: enable each rule in Kibana once its index pattern has data.
    out.setdefault("enabled", False)
    return out


def load_all(directory: Path = RULES) -> list[dict]:
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise RuleError(f"no rules in {directory}")
    rules, errors = [], []
    for path in paths:
        try:
            rules.append(load(path))
        except RuleError as e:
            errors.append(str(e))
    ids = [r["rule_id"] for r in rules]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        errors.append(f"duplicate rule_id {', '.join(sorted(dupes))}")
    if errors:
        raise RuleError("\n".join(errors))
    return rules


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("build/sluice-rules.ndjson"))
    ap.add_argument("--check", action="store_true", help="only check the rules, write nothing")
    args = ap.parse_args()
    try:
        rules = load_all()
    except RuleError as e:
        print(f"rules: {e}", file=sys.stderr)
        return 1
    if not args.check:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rules))
        print(f"rules: wrote {len(rules)} rules to {args.out}")
    else:
        print(f"rules: {len(rules)} rules ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
