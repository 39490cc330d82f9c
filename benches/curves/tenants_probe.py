#!/usr/bin/env python3
"""The tenants curve's client side (benches/curves/tenants.sh): what a user of the gateway sees.

Owns nothing but its sockets. Three commands, each printing one JSON object on stdout:

  rcpt   One SMTP session (EHLO, STARTTLS with the run's CA, EHLO) that sends COUNT recipients
         to addresses spread uniformly over the tenants' domains (one line of DOMAINS per tenant,
         its domains separated by spaces): per transaction MAIL FROM, PER_TX RCPT TO of one
         random tenant (a transaction belongs to one tenant in exogate; each RCPT picks one of
         that tenant's domains at random), then RSET. Only RCPT round trips are timed (send to
         reply, perf_counter_ns), after WARMUP untimed ones. Every RCPT must be answered 250:
         anything else is counted in "refused" and the caller reports a FAILURE. Also reported:
         a transaction's first RCPT against the others, MAIL and RSET (p50), the slowest RCPT.
  reload Sends SIGHUP to PID and polls METRICS (the admin /metrics URL) until
         exogate_reloads_total{result="ok"} exceeds its value before the signal: the reload is then
         in force (the counter is incremented right after the new snapshot is swapped in,
         src/app/reload.rs). A failed reload (the "failed" series grows) or TIMEOUT is an error.
  banner Connects to ADDR until something listens (every millisecond) and reads the 220 banner;
         prints the wall-clock time it arrived (the caller times a server's start with it).

Invariants: loopback only; the same client, seed and address sequence for every server and point,
so that figures differ by the server alone.
"""

import argparse
import json
import os
import random
import re
import signal
import smtplib
import ssl
import sys
import time
import urllib.request


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def cmd_rcpt(a):
    with open(a.domains) as f:
        tenants = [line.split() for line in f if line.strip()]
    rng = random.Random(a.seed)
    host, port = a.addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.check_hostname = False
    s = smtplib.SMTP(host, int(port), local_hostname="probe.bench.test", timeout=30)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    times = []
    refused = 0
    first_refusal = ""
    sent = 0
    total = a.warmup + a.count
    t_start = time.perf_counter()
    firsts = []
    others = []
    mails = []
    rsets = []
    while sent < total:
        t0 = time.perf_counter_ns()
        code, msg = s.mail(a.sender)
        mails.append((time.perf_counter_ns() - t0) / 1000.0)
        if code != 250:
            raise SystemExit(f"MAIL FROM refused: {code} {msg!r}")
        domains = tenants[rng.randrange(len(tenants))]
        for k in range(min(a.per_tx, total - sent)):
            rcpt = f"u{rng.randrange(1_000_000)}@{rng.choice(domains)}"
            t0 = time.perf_counter_ns()
            code, msg = s.rcpt(rcpt)
            dt = time.perf_counter_ns() - t0
            if sent >= a.warmup:
                times.append(dt / 1000.0)
                (firsts if k == 0 else others).append(dt / 1000.0)
            if code != 250:
                refused += 1
                if not first_refusal:
                    first_refusal = f"<{rcpt}>: {code} {msg.decode(errors='replace')}"
            sent += 1
        t0 = time.perf_counter_ns()
        s.rset()
        rsets.append((time.perf_counter_ns() - t0) / 1000.0)
    elapsed = time.perf_counter() - t_start
    s.quit()
    times.sort()
    print(
        json.dumps(
            {
                "rcpts": len(times),
                "refused": refused,
                "first_refusal": first_refusal,
                "p50_us": round(percentile(times, 0.50), 1),
                "p99_us": round(percentile(times, 0.99), 1),
                "mean_us": round(sum(times) / max(1, len(times)), 1),
                "max_us": round(times[-1] if times else 0, 1),
                "over_100ms": sum(1 for t in times if t > 100_000),
                "first_rcpt_max_us": round(max(firsts, default=0), 1),
                "session_s": round(elapsed, 3),
                "first_rcpt_p50_us": round(percentile(sorted(firsts), 0.50), 1),
                "other_rcpt_p50_us": round(percentile(sorted(others), 0.50), 1),
                "mail_p50_us": round(percentile(sorted(mails), 0.50), 1),
                "rset_p50_us": round(percentile(sorted(rsets), 0.50), 1),
            },
            separators=(",", ":"),
        )
    )


def reloads(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    found = {}
    for result in ("ok", "failed"):
        m = re.search(r'^exogate_reloads_total\{result="%s"\} (\S+)' % result, text, re.M)
        found[result] = float(m.group(1)) if m else 0.0
    return found


def cmd_reload(a):
    before = reloads(a.metrics)
    t0 = time.perf_counter()
    os.kill(a.pid, signal.SIGHUP)
    polls = 0
    while True:
        now = reloads(a.metrics)
        polls += 1
        if now["ok"] > before["ok"]:
            break
        if now["failed"] > before["failed"]:
            raise SystemExit("the reload failed (exogate_reloads_total{result=\"failed\"} grew); see the gateway's log")
        if time.perf_counter() - t0 > a.timeout:
            raise SystemExit(f"no reload in force after {a.timeout} s")
        time.sleep(a.poll)
    print(json.dumps({"reload_s": round(time.perf_counter() - t0, 4), "polls": polls}, separators=(",", ":")))


def cmd_banner(a):
    """Waits for the first 220 banner on ADDR (connect retried every millisecond while refused)
    and prints the wall-clock time (time.time()) it arrived: the caller started the server and
    took its own time before, so the difference is the start time without this client's start."""
    import socket

    host, port = a.addr.rsplit(":", 1)
    deadline = time.time() + a.timeout
    while True:
        if a.pid and not os.path.exists(f"/proc/{a.pid}"):
            raise SystemExit(f"process {a.pid} exited before listening")
        try:
            sock = socket.create_connection((host, int(port)), timeout=a.timeout)
            break
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise SystemExit(f"nothing listens on {a.addr} after {a.timeout} s")
            time.sleep(0.001)
    f = sock.makefile("rb")
    line = f.readline()
    t = time.time()
    if not line.startswith(b"220"):
        raise SystemExit(f"unexpected banner {line!r}")
    sock.sendall(b"QUIT\r\n")
    sock.close()
    print(json.dumps({"t": t}, separators=(",", ":")))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rcpt")
    r.add_argument("--addr", required=True)
    r.add_argument("--ca", required=True)
    r.add_argument("--domains", required=True)
    r.add_argument("--count", type=int, default=5000)
    r.add_argument("--warmup", type=int, default=500)
    r.add_argument("--per-tx", type=int, default=5)
    r.add_argument("--sender", default="alice@example.org")
    r.add_argument("--seed", type=int, default=16)
    h = sub.add_parser("reload")
    h.add_argument("--pid", type=int, required=True)
    h.add_argument("--metrics", required=True)
    h.add_argument("--poll", type=float, default=0.002)
    h.add_argument("--timeout", type=float, default=120)
    b = sub.add_parser("banner")
    b.add_argument("--addr", required=True)
    b.add_argument("--pid", type=int, default=0)
    b.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    {"rcpt": cmd_rcpt, "reload": cmd_reload, "banner": cmd_banner}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
