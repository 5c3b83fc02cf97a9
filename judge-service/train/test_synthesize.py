"""The generated training rows: reproducible, labelled by what was planted, held out by template."""

import json
import os
import subprocess
import sys

import synthesize

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_same_seed_writes_the_same_file(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        subprocess.run([sys.executable, os.path.join(HERE, "synthesize.py"), "--out", str(out)], check=True)
    assert a.read_bytes() == b.read_bytes()
    assert [json.loads(l) for l in a.read_text(encoding="utf-8").splitlines()] == synthesize.rows(20261204)


def test_another_seed_writes_other_texts():
    assert [r["text"] for r in synthesize.rows(1)] != [r["text"] for r in synthesize.rows(2)]


def planted_phrases():
    openers = [o for o in synthesize.OPENERS if o]
    foreign = [s.split("{")[0][:12] for ss in synthesize.FOREIGN.values() for s in ss]
    return openers, foreign


def test_attacks_carry_an_instruction_and_benign_rows_none():
    openers, foreign = planted_phrases()
    goal_heads = {h[0].upper() + h[1:] for gs in synthesize.GOALS.values() for h in (g.split("{")[0].strip() for g in gs)}
    rows = synthesize.rows(20261204)
    for r in rows:
        text = r["text"].replace("\\n", "\n")  # line breaks inside a JSON tool result
        planted = any(p in text for p in openers + foreign) or any(h in text for h in goal_heads)
        if r["label"] == 1:
            assert planted, text
            assert r["category"].startswith("indirect_injection:")
            assert r["category"].rsplit(":", 1)[1] in synthesize.GOALS
        else:
            assert not any(p in text for p in openers + foreign), r["text"]
    kinds = {(r["source"], r["label"]) for r in rows}
    assert kinds == {
        ("sluice-synth/tool-results", 1),
        ("sluice-synth/tool-results", 0),
        ("sluice-synth/trigger-words", 0),
    }


def test_every_tool_and_goal_is_used_on_both_sides():
    rows = synthesize.rows(20261204)
    attacked = {tuple(r["category"].split(":")[1:]) for r in rows if r["label"] == 1}
    clean = {r["category"].split(":")[1] for r in rows if r["source"].endswith("tool-results") and r["label"] == 0}
    tools = {t.__name__[2:] for t in synthesize.TOOLS}
    assert {t for t, _ in attacked} == tools == clean
    assert {g for _, g in attacked} == set(synthesize.GOALS)
