#!/usr/bin/env python3
"""How the judge's embedded model holds up against disguised text.

Takes 400 English attacks and 400 English benign prompts from the test file, writes each in
five forms (plain; mathematical bold letters; Cyrillic look-alikes; zero-width spaces between
letters; full-width ASCII) and prints, per form, the share of attacks the judge blocks and of
benign prompts it flags. Usage: scripts/judge-disguises.py JUDGE_BIN [DATA_DIR]
(`sluice-judge score` reads one text per line on stdin and prints score, verdict, text).
"""
import json
import random
import subprocess
import sys

CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у"}
FORMS = {
    "plain": lambda s: s,
    "bold": lambda s: "".join(
        chr(0x1D41A + ord(c) - 97) if "a" <= c <= "z"
        else chr(0x1D400 + ord(c) - 65) if "A" <= c <= "Z" else c
        for c in s
    ),
    "homoglyph": lambda s: "".join(CYRILLIC.get(c, c) for c in s),
    "zero-width": lambda s: "\u200b".join(s),
    "full-width": lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s),
}


def verdicts(judge, texts):
    out = subprocess.run([judge, "score"], input="\n".join(texts) + "\n", text=True,
                         capture_output=True, check=True).stdout
    return [line.split("\t")[1] for line in out.splitlines()]


def main():
    judge = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
    rows = [json.loads(l) for l in open(f"{data}/prompt_injection_dev_test.jsonl")]
    rng = random.Random(7)
    pick = {}
    for label in (1, 0):
        texts = [r["text"].replace("\n", " ") for r in rows if r["label"] == label and r["lang"] == "en"]
        rng.shuffle(texts)
        pick[label] = texts[:400]
    print(f"{'form':<12} {'attacks blocked':>16} {'benign flagged':>15}")
    for name, form in FORMS.items():
        att = verdicts(judge, [form(t) for t in pick[1]])
        ben = verdicts(judge, [form(t) for t in pick[0]])
        blocked = sum(v == "VERDICT_BLOCK" for v in att) / len(att)
        flagged = sum(v != "VERDICT_ALLOW" for v in ben) / len(ben)
        print(f"{name:<12} {blocked:>16.3f} {flagged:>15.3f}")


if __name__ == "__main__":
    main()
