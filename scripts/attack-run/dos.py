"""Denial of service: slow clients, huge lines, many recipients, pipelining
abuse, BDAT abuse, connection floods. Prints what the gateway did and its RSS."""
import socket
import sys
import threading
import time
from lib import *


def rss(port):
    import subprocess
    pid = subprocess.run(["bash", "-c", f"ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2"],
                         capture_output=True, text=True).stdout.strip()
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return l.split()[1] + " kB"


def timed(f, *a):
    t = time.time()
    try:
        r = f(*a)
    except Exception as e:
        r = repr(e)[:120]
    return r, round(time.time() - t, 1)


def dribble_command(port):
    s = Sess(port)
    s.starttls()
    s.s.settimeout(120)
    line = b"MAIL FROM:<sender@example.org>" + b" " * 200 + b"\r\n"
    try:
        for b in line:
            s.send(bytes([b]))
            time.sleep(1)
        return "command completed: " + s.reply()
    except Exception:
        try:
            return "closed with: " + s.reply()
        except Exception as e:
            return "closed " + repr(e)[:60]


def dribble_body(port, bdat):
    """A message body at 2 bytes/s, after DATA (and its 354) or after a BDAT
    command announcing more than is ever sent."""
    s = Sess(port)
    s.starttls()
    s.s.settimeout(120)
    s.cmd(b"MAIL FROM:<sender@example.org>")
    s.cmd(b"RCPT TO:<alice@contoso.com>")
    if bdat:
        s.send(b"BDAT 100000 LAST\r\n")
    else:
        s.cmd(b"DATA")
    try:
        for i in range(200):
            s.send(b"x")
            time.sleep(0.5)
        return "not closed after 100 s"
    except Exception:
        try:
            return "closed with: " + s.reply()
        except Exception as e:
            return "closed " + repr(e)[:60]


def idle_after_greeting(port):
    s = Sess(port)
    s.s.settimeout(120)
    try:
        return "closed with: " + s.reply()
    except Exception as e:
        return repr(e)[:60]


def huge_command_line(port, n):
    s = Sess(port)
    s.starttls()
    try:
        s.send(b"MAIL FROM:<" + b"a" * n + b"@example.org>\r\n")
        r = s.reply()
        r2 = s.cmd(b"NOOP")
        return f"{r.splitlines()[-1][:60]} / then NOOP: {r2[:30]}"
    except Exception as e:
        return repr(e)[:80]


def huge_data_line(port, n):
    clear()
    s = Sess(port)
    s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>")
    s.cmd(b"RCPT TO:<alice@contoso.com>")
    s.cmd(b"DATA")
    try:
        s.send(body(text=b"x" * n + b"\r\n") + b"\r\n.\r\n")
        r = s.reply()
    except Exception as e:
        r = repr(e)[:80]
    q = wait_queued(1, 20) if r.startswith("250") else queued()
    got = [len(m["content"]) for m in q]
    return f"{r.splitlines()[-1][:70]} downstream sizes={got}"


def huge_header_line(port, n):
    clear()
    s = Sess(port)
    s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>")
    s.cmd(b"RCPT TO:<alice@contoso.com>")
    s.cmd(b"DATA")
    try:
        s.send(body(b"X-Long: " + b"y" * n + b"\r\n") + b"\r\n.\r\n")
        r = s.reply()
    except Exception as e:
        r = repr(e)[:80]
    q = wait_queued(1, 20) if r.startswith("250") else queued()
    return f"{r.splitlines()[-1][:70]} downstream={len(q)}"


def many_rcpts(port, n, pipelined):
    clear()
    s = Sess(port, timeout=120)
    s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>")
    counts = {}
    if pipelined:
        s.send(b"".join(b"RCPT TO:<u%d@contoso.com>\r\n" % i for i in range(n)))
        for i in range(n):
            r = s.reply()[:3]
            counts[r] = counts.get(r, 0) + 1
    else:
        for i in range(n):
            r = s.cmd(b"RCPT TO:<u%d@contoso.com>" % i)[:3]
            counts[r] = counts.get(r, 0) + 1
    d = s.cmd(b"DATA")
    s.send(body() + b"\r\n.\r\n")
    e = s.reply()
    s.close()
    q = wait_queued(1, 30) if e.startswith("250") else []
    return f"RCPT replies {counts}; EOD {e[:40]!r}; downstream rcpts={sum(len(m['rcpts']) for m in q)}"


def pipeline_flood(port, n):
    s = Sess(port, timeout=60)
    s.starttls()
    s.send(b"NOOP\r\n" * n)
    got = 0
    try:
        while got < n:
            r = s.reply()
            got += 1
            if not r.startswith("250"):
                return f"after {got}: {r[:60]}"
    except Exception as e:
        return f"after {got}: {repr(e)[:60]}"
    return f"{got} replies, all 250"


def bad_commands(port):
    s = Sess(port, timeout=20)
    s.starttls()
    last = ""
    for i in range(30):
        try:
            last = s.cmd(b"XYZZY %d" % i)
        except Exception as e:
            return f"closed after {i} bad commands, last reply {last[:50]!r}"
    return f"still open after 30 bad commands: {last[:50]}"


def bdat_abuse(port, cmd):
    s = Sess(port, timeout=20)
    s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>")
    s.cmd(b"RCPT TO:<alice@contoso.com>")
    try:
        r = s.cmd(cmd)
        r2 = s.cmd(b"NOOP")
        return f"{r.splitlines()[-1][:60]} / NOOP {r2[:20]!r}"
    except Exception as e:
        return repr(e)[:80]


def conn_flood(port, n):
    socks, codes = [], {}
    for i in range(n):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(c)
            g = c.recv(200)[:3].decode()
            codes[g] = codes.get(g, 0) + 1
        except Exception as e:
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
    # Does a legitimate client still get through?
    for c in socks:
        c.close()
    time.sleep(1)
    log = transaction(port, b"<sender@example.org>", [b"<alice@contoso.com>"], body())
    return f"{codes}; afterwards a normal session: {log[-2][1][:40]!r}"


if __name__ == "__main__":
    which = sys.argv[1]
    port = QUEUE if (len(sys.argv) < 3 or sys.argv[2] == "queue") else PROXY
    print("RSS before", rss(port))
    if which == "slow":
        res = {}
        ts = [threading.Thread(target=lambda k=k, f=f: res.__setitem__(k, timed(f, port)))
              for k, f in [("command 1 byte/s", dribble_command), ("DATA 2 bytes/s", lambda p: dribble_body(p, False)),
                           ("BDAT 2 bytes/s", lambda p: dribble_body(p, True)),
                           ("idle after greeting", idle_after_greeting)]]
        [t.start() for t in ts]
        [t.join() for t in ts]
        for k, v in res.items():
            print(f"slow {k}: {v[0]} after {v[1]} s")
    elif which == "big":
        for n in (2000, 100_000, 5_000_000):
            print(f"command line {n} B:", huge_command_line(port, n))
        for n in (1_000_000, 20_000_000):
            print(f"DATA body line {n} B without CRLF:", huge_data_line(port, n))
        for n in (1_000_000, 5_000_000):
            print(f"header line {n} B:", huge_header_line(port, n))
        print("RSS after", rss(port))
    elif which == "rcpt":
        print("1001 rcpts one by one:", many_rcpts(port, 1001, False))
        print("5000 rcpts pipelined:", many_rcpts(port, 5000, True))
        print("NOOP x 100000 pipelined:", pipeline_flood(port, 100000))
        print("bad commands:", bad_commands(port))
        for c in (b"BDAT 99999999999999999999999", b"BDAT -1", b"BDAT 0 LAST", b"BDAT 1 LAST LAST",
                  b"BDAT 18446744073709551616", b"BDAT 200000000 LAST"):
            print(f"{c!r}:", bdat_abuse(port, c))
        print("RSS after", rss(port))
    elif which == "flood":
        print("260 connections from one IP:", conn_flood(port, 260))
        print("RSS after", rss(port))
