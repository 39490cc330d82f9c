"""Raw SMTP client and downstream inspection for the attack run (docs/attack-run.md).

The rig comes from setup.sh (in /tmp/atk). Not part of the test suite: these
scripts print what happened for a person to read; the regression tests for
what they found are unit and integration tests."""
import json
import os
import socket
import ssl
import subprocess
import time

PF = "/tmp/atk/postfix/etc"
CA = "/tmp/atk/pki/ca.pem"
QUEUE, PROXY = 12526, 12527
TID = "6f1a2b3c-0000-4000-8000-00000000c0de"


class Sess:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        l, self.buf = self.buf.split(b"\n", 1)
        return l + b"\n"

    def reply(self):
        out = []
        while True:
            l = self.line()
            out.append(l.decode("utf-8", "replace").rstrip("\r\n"))
            if len(l) < 4 or l[3:4] != b"-":
                return "\n".join(out)

    def send(self, raw):
        self.s.sendall(raw)

    def cmd(self, raw):
        if isinstance(raw, str):
            raw = raw.encode()
        self.s.sendall(raw + b"\r\n")
        return self.reply()

    def starttls(self, ehlo=b"EHLO attacker.test"):
        self.cmd(ehlo)
        r = self.cmd("STARTTLS")
        assert r.startswith("220"), r
        ctx = ssl.create_default_context(cafile=CA)
        self.s = ctx.wrap_socket(self.s, server_hostname="localhost")
        self.buf = b""
        return self.cmd(ehlo)

    def close(self):
        try:
            self.s.close()
        except Exception:
            pass


def body(extra_headers=b"", text=b"hello\r\n", info=b"contoso,office365_emails,inline", tid=TID,
         first=None):
    """A message as EXO would hand it over, with `extra_headers` first."""
    h = b""
    if first is not None:
        h += first
    h += extra_headers
    if info:
        h += b"X-CLOUD-SEC-AV-Info: " + info + b"\r\n"
    if tid:
        h += b"X-MS-Exchange-CrossTenant-Id: " + tid.encode() + b"\r\n"
    h += (b"From: sender@example.org\r\nTo: alice@contoso.com\r\nSubject: attack "
          + str(time.time()).encode() + b"\r\nMessage-ID: <" + os.urandom(6).hex().encode()
          + b"@example.org>\r\n")
    return h + b"\r\n" + text


def transaction(port, mail, rcpts, data, tls=True, ehlo=b"EHLO attacker.test"):
    """One transaction; returns list of (command, reply)."""
    s = Sess(port)
    log = [("greet", s.greeting)]
    try:
        if tls:
            log.append(("ehlo", s.starttls(ehlo)))
        else:
            log.append(("ehlo", s.cmd(ehlo)))
        r = s.cmd(b"MAIL FROM:" + mail)
        log.append(("MAIL", r))
        ok = 0
        for rc in rcpts:
            r = s.cmd(b"RCPT TO:" + rc)
            log.append(("RCPT " + rc.decode("utf-8", "replace"), r))
            ok += r.startswith("250")
        if ok and data is not None:
            r = s.cmd(b"DATA")
            log.append(("DATA", r))
            if r.startswith("354"):
                s.send(data if data.endswith(b"\r\n.\r\n") else data + b"\r\n.\r\n")
                log.append(("EOD", s.reply()))
        log.append(("QUIT", s.cmd(b"QUIT")))
    except (EOFError, OSError) as e:
        log.append(("closed", repr(e)[:200]))
    s.close()
    return log


def queued():
    """Every message in the downstream Postfix queue: sender, recipients, header+body.
    Each once: postqueue reads the queue folders one after another, so a message that
    moves from active to deferred meanwhile is listed twice, under the same queue id."""
    out = subprocess.run(["postqueue", "-c", PF, "-j"], capture_output=True, text=True).stdout
    msgs = []
    seen = set()
    for l in out.splitlines():
        v = json.loads(l)
        if v["queue_id"] in seen:
            continue
        seen.add(v["queue_id"])
        content = subprocess.run(["postcat", "-c", PF, "-bh", "-q", v["queue_id"]],
                                 capture_output=True).stdout
        env = subprocess.run(["postcat", "-c", PF, "-e", "-q", v["queue_id"]],
                             capture_output=True).stdout.decode("utf-8", "replace")
        msgs.append({"id": v["queue_id"], "sender": v["sender"],
                     "rcpts": [r["address"] for r in v["recipients"]],
                     "content": content, "env": env})
    return msgs


def clear():
    subprocess.run(["postsuper", "-c", PF, "-d", "ALL"], capture_output=True)


def wait_queued(n=1, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        q = queued()
        if len(q) >= n:
            time.sleep(0.3)
            return queued()
        time.sleep(0.3)
    return queued()


def header_of(content):
    return content.split(b"\n\n", 1)[0]
