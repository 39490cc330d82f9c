#!/usr/bin/env python3
"""Summarize a results folder of benches/corpus/run.sh as markdown tables.

    summarize.py RESULTS_DIR

RESULTS_DIR holds one folder per engine variant (rspamd-default, rspamd-nohost, rspamd-nohost-nodate, exogate-detect,
exogate-detect-rspamd), each with GROUP.jsonl (one JSON object per message) and GROUP.jsonl.wall
("seconds messages concurrency"). Definitions (also in benches/corpus/README.md):

  flagged  the engine did something other than plain delivery:
           rspamd action in {add header, rewrite subject, soft reject, reject};
           exogate action in {junk, quarantine, reject}
  caught   flagged with a verdict that keeps the message out of the inbox for good (junk folder
           or not delivered): rspamd {add header, rewrite subject, reject} (soft reject only
           defers); exogate {junk, quarantine, reject} (= flagged)
  blocked  not delivered at all: rspamd reject; exogate quarantine or reject
  greylist rspamd's greylist action (a deferral, counted in none of the above)

A message the engine could not scan ("error" set, or no action) counts in the denominator and in
the errors column, never as flagged.
"""
import collections
import json
import os
import sys

HAM = ["easy_ham", "easy_ham_2", "hard_ham"]
SPAM = ["spam", "spam_2"]
PHISH = ["phish_real", "fraud_real", "phish_synth"]
ORDER = HAM + SPAM + PHISH
# real and synthetic phishing are reported apart (the synthetic set is ours; see README)
KIND = {**{g: "ham" for g in HAM}, **{g: "spam" for g in SPAM},
        "phish_real": "phish-real", "fraud_real": "phish-real", "phish_synth": "phish-synth"}
KINDS = ("ham", "spam", "phish-real", "phish-synth")

RSPAMD_FLAGGED = {"add header", "rewrite subject", "soft reject", "reject"}
RSPAMD_CAUGHT = {"add header", "rewrite subject", "reject"}
RSPAMD_BLOCKED = {"reject"}
EXO_FLAGGED = {"junk", "quarantine", "reject"}
EXO_CAUGHT = EXO_FLAGGED
EXO_BLOCKED = {"quarantine", "reject"}
VARIANT_ORDER = ["rspamd-default", "rspamd-nohost", "rspamd-nohost-nodate", "exogate-detect", "exogate-detect-rspamd"]


def load(d, variant):
    out = {}
    vd = os.path.join(d, variant)
    for g in ORDER:
        p = os.path.join(vd, g + ".jsonl")
        if not os.path.exists(p):
            continue
        rows = []
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        rows.append({"action": None, "error": "unparsable output line"})
        wall = None
        if os.path.exists(p + ".wall"):
            s, n, c = open(p + ".wall").read().split()
            wall = (float(s), int(n), int(c))
        out[g] = (rows, wall)
    return out


def sets(variant):
    if variant.startswith("rspamd"):
        return RSPAMD_FLAGGED, RSPAMD_CAUGHT, RSPAMD_BLOCKED
    return EXO_FLAGGED, EXO_CAUGHT, EXO_BLOCKED


def pct(a, n):
    return f"{100.0 * a / n:.1f}%" if n else "–"


def stats(variant, rows, wall):
    fl, ca, bl = sets(variant)
    n = wall[1] if wall else len(rows)   # files sent; a missing output line is an error
    acts = [r.get("action") if not r.get("error") else None for r in rows]
    s = {
        "n": n,
        "flagged": sum(a in fl for a in acts),
        "caught": sum(a in ca for a in acts),
        "blocked": sum(a in bl for a in acts),
        "greylist": sum(a == "greylist" for a in acts),
        "errors": sum(a is None for a in acts) + max(0, n - len(rows)),
    }
    s["ms_wall"] = 1000.0 * wall[0] / wall[1] if wall and wall[1] else None
    s["conc"] = wall[2] if wall else None
    lat = [r["ms"] for r in rows if isinstance(r.get("ms"), (int, float))]
    s["ms_lat"] = sum(lat) / len(lat) if lat else None
    return s


def add(a, b):
    if a is None:
        return dict(b)
    r = dict(a)
    for k in ("n", "flagged", "caught", "blocked", "greylist", "errors"):
        r[k] += b[k]
    return r


def variant_table(variant, data):
    lines = [f"#### {variant}", "",
             "| group | messages | flagged | caught | blocked | greylist | errors | ms/msg (wall) | latency ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals = {}
    for g in ORDER:
        if g not in data:
            continue
        s = stats(variant, *data[g])
        totals[KIND[g]] = add(totals.get(KIND[g]), s)
        wall = f"{s['ms_wall']:.1f} (×{s['conc']})" if s["ms_wall"] is not None else "–"
        lat = f"{s['ms_lat']:.0f}" if s["ms_lat"] is not None else "–"
        grey = pct(s["greylist"], s["n"]) if variant.startswith("rspamd") else "–"
        lines.append(f"| {g} | {s['n']} | {pct(s['flagged'], s['n'])} | {pct(s['caught'], s['n'])} | "
                     f"{pct(s['blocked'], s['n'])} | {grey} | {s['errors']} | {wall} | {lat} |")
    for k in KINDS:
        if k in totals:
            s = totals[k]
            lines.append(f"| **all {k}** | {s['n']} | {pct(s['flagged'], s['n'])} | {pct(s['caught'], s['n'])} | "
                         f"{pct(s['blocked'], s['n'])} | "
                         f"{pct(s['greylist'], s['n']) if variant.startswith('rspamd') else '–'} | {s['errors']} | | |")
    return lines


def comparison(all_data):
    vs = [v for v in VARIANT_ORDER if v in all_data]
    lines = ["| group | messages | " + " | ".join(f"{v} caught" for v in vs) + " |",
             "|---|---:|" + "---:|" * len(vs)]
    for g in ORDER:
        if not any(g in all_data[v] for v in vs):
            continue
        n = next(stats(v, *all_data[v][g])["n"] for v in vs if g in all_data[v])
        cells = []
        for v in vs:
            if g in all_data[v]:
                s = stats(v, *all_data[v][g])
                cells.append(pct(s["caught"], s["n"]))
            else:
                cells.append("–")
        lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    return lines


def contribution_exogate(variant, data):
    """Which check's findings (score > 0) appear in flagged messages, per kind of mail."""
    fl = sets(variant)[0]
    per = {k: collections.Counter() for k in KINDS}
    only = {k: collections.Counter() for k in per}
    nflag = collections.Counter()
    tags = collections.defaultdict(collections.Counter)
    for g, (rows, _) in data.items():
        k = KIND[g]
        for r in rows:
            if r.get("error") or r.get("action") not in fl:
                continue
            nflag[k] += 1
            checks = set()
            for f in r.get("findings") or []:
                if (f.get("score") or 0) > 0:
                    checks.add(f.get("check"))
                    tags[f.get("check")][f.get("tag")] += 1
            for c in checks:
                per[k][c] += 1
            if len(checks) == 1:
                only[k][next(iter(checks))] += 1
            if not checks:
                per[k]["(forced, no score)"] += 1
    allc = sorted(set().union(*[set(c) for c in per.values()]))
    if not allc:
        return []
    lines = [f"#### {variant}: checks with a scoring finding in flagged messages", "",
             "| check | " + " | ".join(f"{k} (flagged {nflag[k]})" for k in per) + " | top tags |",
             "|---|" + "---:|" * len(per) + "---|"]
    for c in allc:
        cells = [f"{per[k][c]} ({pct(per[k][c], nflag[k])}; alone {only[k][c]})" for k in per]
        top = ", ".join(f"{t} {n}" for t, n in tags[c].most_common(4))
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {top} |")
    return lines


def contribution_rspamd(variant, data, top=10):
    fl = sets(variant)[0]
    lines = [f"#### {variant}: most frequent scoring symbols in flagged messages", "",
             "| kind | flagged | top symbols (share of flagged messages) |", "|---|---:|---|"]
    for k in KINDS:
        cnt = collections.Counter()
        n = 0
        for g, (rows, _) in data.items():
            if KIND[g] != k:
                continue
            for r in rows:
                if r.get("error") or r.get("action") not in fl:
                    continue
                n += 1
                for sym, sc in (r.get("symbols") or {}).items():
                    if sc > 0:
                        cnt[sym] += 1
        if n:
            lines.append(f"| {k} | {n} | " + ", ".join(f"{s} {pct(c, n)}" for s, c in cnt.most_common(top)) + " |")
    return lines


def by_technique(all_data):
    """Caught share per synthetic technique (from the generator's manifest.jsonl)."""
    manifest = {}
    for v in all_data.values():
        rows = v.get("phish_synth", ([], None))[0]
        for r in rows:
            d = os.path.dirname(r.get("file") or "")
            mp = os.path.join(d, "manifest.jsonl")
            if d and os.path.exists(mp) and not manifest:
                with open(mp) as f:
                    for line in f:
                        m = json.loads(line)
                        manifest[os.path.join(d, m["file"])] = m
        if manifest:
            break
    if not manifest:
        return []
    vs = [v for v in VARIANT_ORDER if v in all_data and "phish_synth" in all_data[v]]
    techs = sorted(set(m["technique"] for m in manifest.values()))
    lines = ["#### phish_synth: caught per technique (synthetic)", "",
             "| technique | messages | " + " | ".join(vs) + " |", "|---|---:|" + "---:|" * len(vs)]
    for t in techs:
        cells = []
        n = sum(1 for m in manifest.values() if m["technique"] == t)
        for v in vs:
            ca = sets(v)[1]
            rows = [r for r in all_data[v]["phish_synth"][0] if manifest.get(r.get("file"), {}).get("technique") == t]
            cells.append(pct(sum(1 for r in rows if not r.get("error") and r.get("action") in ca), len(rows)))
        lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    return lines


def main():
    d = sys.argv[1]
    all_data = {v: load(d, v) for v in VARIANT_ORDER if os.path.isdir(os.path.join(d, v))}
    all_data = {v: x for v, x in all_data.items() if x}
    if not all_data:
        print(f"(no results in {d})")
        return
    out = [f"### Corpus benchmark ({os.path.basename(os.path.normpath(d))})", ""]
    for vf in ("rspamd.version", "exogate.version"):
        p = os.path.join(d, vf)
        if os.path.exists(p):
            out.append(f"- {vf.split('.')[0]}: " + " ".join(open(p).read().split()))
    for v in all_data:
        p = os.path.join(d, v, "params")
        if os.path.exists(p):
            out.append(f"- {v}: `{open(p).read().strip()}`")
    out += ["", "Caught (share of messages kept out of the inbox):", ""] + comparison(all_data) + [""]
    for v, data in all_data.items():
        out += variant_table(v, data) + [""]
    out += by_technique(all_data) + [""]
    for v, data in all_data.items():
        c = contribution_rspamd(v, data) if v.startswith("rspamd") else contribution_exogate(v, data)
        if c:
            out += c + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
