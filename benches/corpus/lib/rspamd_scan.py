#!/usr/bin/env python3
"""Send every message of a corpus group to rspamd's /checkv2 and write one JSON line per message.

    rspamd_scan.py --url http://127.0.0.1:PORT --ip 192.0.2.1 [--settings JSON] \
                   [--concurrency N] --out FILE.jsonl FILE...

Each line: {"file", "action", "score", "symbols": {name: score, ...} (non-zero scores only),
"all_symbols": [names], "ms": latency, "error": null|text}. The SMTP facts are unknown, so only
the `IP` header is sent (no HELO, Hostname, From or Rcpt: rspamd then takes the envelope from
the header fields). `--settings` goes out as rspamd's per-request `Settings` header; the
benchmark's "nohost" variant uses it to switch the host-name filters off. Standard library only.
"""
import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def check(url, ip, settings, path):
    with open(path, "rb") as f:
        body = f.read()
    headers = {"IP": ip, "Content-Type": "application/octet-stream"}
    if settings:
        headers["Settings"] = settings
    req = urllib.request.Request(url + "/checkv2", data=body, headers=headers, method="POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            d = json.load(resp)
        ms = (time.perf_counter() - t0) * 1000
        syms = d.get("symbols", {})
        return {
            "file": path,
            "action": d.get("action"),
            "score": round(float(d.get("score", 0.0)), 3),
            "symbols": {k: round(v.get("score", 0.0), 3) for k, v in syms.items() if v.get("score")},
            "all_symbols": sorted(syms),
            "ms": round(ms, 2),
            "error": None,
        }
    except Exception as e:  # an error is a result too: counted, never silently dropped
        return {"file": path, "action": None, "score": None, "symbols": {}, "all_symbols": [],
                "ms": round((time.perf_counter() - t0) * 1000, 2), "error": str(e)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ip", required=True)
    ap.add_argument("--settings", default="")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    files = a.files or [l.rstrip("\n") for l in sys.stdin if l.strip()]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.concurrency) as ex, open(a.out, "w") as out:
        for r in ex.map(lambda p: check(a.url, a.ip, a.settings, p), files):
            out.write(json.dumps(r, sort_keys=True) + "\n")
    wall = time.perf_counter() - t0
    # the wall time of the whole group goes to a side file: summarize.py reports it per message
    with open(a.out + ".wall", "w") as w:
        w.write(f"{wall:.3f} {len(files)} {a.concurrency}\n")


if __name__ == "__main__":
    main()
