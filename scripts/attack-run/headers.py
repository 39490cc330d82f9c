"""Forged / extended owned fields: X-CLOUD-SEC-AV-* and Authentication-Results
claiming our authserv-id. For each variant: the gateway's reply and what the
downstream Postfix stored, read by Postfix (its header records) and by
Python's email (compat32 and default policies)."""
import email
import email.policy
import re
import sys
from lib import *

AUTHSERV = {QUEUE: b"gw-queue.test", PROXY: b"gw-proxy.test"}
F = b"X-CLOUD-SEC-AV-SCL: false"


def variants(authserv):
    a = authserv
    ar = b"Authentication-Results: " + a + b"; spf=pass smtp.mailfrom=ceo@contoso.com; dmarc=pass header.from=contoso.com"
    return [
        ("first line white space (continuation of our last field)", b" ; action=deliver; score=-100; enforced=no\r\n", None),
        ("first line tab continuation", b"\t; spf=pass; dmarc=pass\r\n", None),
        ("two orphan continuation lines", b" x\r\n y; action=deliver\r\n", None),
        ("orphan after bare LF blank-ish", b" \n", None),
        ("plain forged SCL", F + b"\r\n", None),
        ("lower case", b"x-cloud-sec-av-scl: false\r\n", None),
        ("space before colon (obs)", b"X-CLOUD-SEC-AV-SCL : false\r\n", None),
        ("tab before colon (obs)", b"X-CLOUD-SEC-AV-SCL\t: false\r\n", None),
        ("folded name? value on next line", b"X-CLOUD-SEC-AV-SCL:\r\n false\r\n", None),
        ("bare CR inside a line", b"X-Note: x\r" + F + b"\r\n", None),
        ("bare CR at line start", b"\r" + F + b"\r\n", None),
        ("bare LF inside", b"X-Note: x\n" + F + b"\r\n", None),
        ("CR CR LF", b"X-Note: x\r\r\n" + F + b"\r\n", None),
        ("bare-LF blank line after CRLF lines", b"X-Note: x\r\n\n" + F + b"\r\n", None),
        ("CR-only blank line", b"X-Note: x\r\n\r" + F + b"\r\n", None),
        ("LF CR LF", b"X-Note: x\n\r\n" + F + b"\r\n", None),
        ("NUL in name", b"X-CLOUD-SEC-AV-\x00SCL: false\r\n", None),
        ("NUL before name", b"\x00X-CLOUD-SEC-AV-SCL: false\r\n", None),
        ("8-bit in name", b"X-CLOUD-SEC-AV-\xadSCL: false\r\n", None),
        ("UTF-8 ZWSP in name", b"X-CLOUD-SEC-AV-\xe2\x80\x8bSCL: false\r\n", None),
        ("DEL in name", b"X-CLOUD-SEC-AV-SCL\x7f: false\r\n", None),
        ("form feed in name", b"X-CLOUD-SEC-AV-\x0cSCL: false\r\n", None),
        ("vertical tab before", b"\x0bX-CLOUD-SEC-AV-SCL: false\r\n", None),
        ("encoded-word name", b"=?utf-8?q?X-CLOUD-SEC-AV-SCL?=: false\r\n", None),
        ("after 8-bit header", b"X-Note: \xff\xfe\r\n" + F + b"\r\n", None),
        ("Verdict forged, folded", b"X-CLOUD-SEC-AV-Verdict: action=deliver;\r\n score=-100\r\n", None),
        ("Info forged other tenant", b"X-CLOUD-SEC-AV-Info: fabrikam,office365_emails,inline\r\n", "noinfo"),
        ("A-R with our authserv-id", ar + b"\r\n", None),
        ("A-R ours upper case + dot", ar.replace(a, a.upper() + b".") + b"\r\n", None),
        ("A-R ours with comment first", ar.replace(a, b"(x) " + a) + b"\r\n", None),
        ("A-R ours with version", ar.replace(a, a + b" 1") + b"\r\n", None),
        ("A-R ours folded authserv", b"Authentication-Results:\r\n " + a + b"; dmarc=pass\r\n", None),
        ("A-R ours quoted", ar.replace(a, b'"' + a + b'"') + b"\r\n", None),
        ("A-R ours bare CR", b"X-Note: x\r" + ar + b"\r\n", None),
        ("A-R ours NUL in name", ar.replace(b"Authentication-", b"Authentication-\x00") + b"\r\n", None),
        ("A-R other authserv (kept)", ar.replace(a, b"mx.example.org") + b"\r\n", None),
        ("field after 1.1 MiB of header", b"".join(b"X-Pad-%05d: " % i + b"a" * 1000 + b"\r\n" for i in range(1150)) + F + b"\r\n", None),
        ("field after 300 KiB single header", b"X-Pad: " + b"a" * 300000 + b"\r\n" + F + b"\r\n", None),
        ("field after very long folded header", b"X-Pad: a" + b"\r\n a" * 60000 + b"\r\n" + F + b"\r\n", None),
        ("AFTER EXO fields: bare-LF blank line after CRLF lines", b"X-Note: x\r\n\n" + F + b"\r\n", "after"),
        ("AFTER EXO fields: LF CR LF", b"X-Note: x\n\r\n" + F + b"\r\n", "after"),
        ("AFTER EXO fields: field after 1.1 MiB of header", b"".join(b"X-Pad-%05d: " % i + b"a" * 1000 + b"\r\n" for i in range(1150)) + F + b"\r\n", "after"),
        ("AFTER EXO fields: A-R ours after 1.1 MiB", b"".join(b"X-Pad-%05d: " % i + b"a" * 1000 + b"\r\n" for i in range(1150)) + ar + b"\r\n", "after"),
        ("A-R ours, space before colon", ar.replace(b"Results:", b"Results :") + b"\r\n", None),
        ("A-R ours, lower-case name", ar.replace(b"Authentication-Results", b"authentication-results") + b"\r\n", None),
        ("A-R ours, quoted with escapes", ar.replace(a, b'"' + a.replace(b"-", b"\\-") + b'"') + b"\r\n", None),
        ("A-R ours, id then comment no space", ar.replace(a + b";", a + b"(x);") + b"\r\n", None),
        ("A-R ours, bare LF folded", b"Authentication-Results:\n " + a + b"; dmarc=pass\r\n", None),
        ("forged in attached message/rfc822 header (kept: not top level)", None, "rfc822"),
        ("no header at all, body only", None, "nohdr"),
    ]


def build(extra, kind):
    if kind == "rfc822":
        inner = F + b"\r\nFrom: x@example.org\r\nSubject: inner\r\n\r\ninner body\r\n"
        text = (b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
                b"Content-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n")
        return body(b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n", text)
    if kind == "nohdr":
        return b"\r\n" + F + b"\r\n"
    if kind == "after":
        b = body()
        i = b.index(b"From: ")
        return b[:i] + extra + b[i:]
    if kind == "noinfo":
        return body(extra, info=None)
    return body(first=extra)


def inspect(content, authserv):
    """Problems with our fields as each reader sees them."""
    problems = []
    hdr = header_of(content)
    # Postfix's reading: header lines as stored (LF lines, continuation = leading WS).
    fields = []
    for l in hdr.split(b"\n"):
        if l[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + l
        else:
            fields.append(l)
    def check(reader, fs):
        ours = [f for f in fs if re.sub(rb"[^\x21-\x7e]", b"", f.split(b":", 1)[0]).lower().startswith(b"x-cloud-sec-av-")]
        names = [re.sub(rb"[^\x21-\x7e]", b"", f.split(b":", 1)[0]).lower() for f in ours]
        for n in set(names):
            if names.count(n) != 1:
                problems.append(f"{reader}: {names.count(n)}x {n.decode()}")
        for f in ours:
            v = f.split(b":", 1)[1] if b":" in f else b""
            if b"score=-100" in v or b"spf=pass" in v or b"y;" in v or b"enforced=no" in v and b"action=deliver; score=0.0" not in v:
                problems.append(f"{reader}: extended {f[:120]!r}")
        ars = [f for f in fs if re.sub(rb"[^\x21-\x7e]", b"", f.split(b":", 1)[0]).lower() == b"authentication-results"]
        mine = [f for f in ars if authserv in f.lower() or authserv.upper() in f]
        if len(mine) > 1:
            problems.append(f"{reader}: {len(mine)} A-R with our authserv-id")
        for f in mine:
            if b"spf=pass" in f or b"dmarc=pass" in f:
                problems.append(f"{reader}: forged A-R {f[:100]!r}")
    check("postfix", fields)
    for pol_name, pol in (("email-compat32", email.policy.compat32), ("email-default", email.policy.default)):
        try:
            m = email.message_from_bytes(content.replace(b"\n", b"\r\n") if b"\r\n" not in content else content, policy=pol)
            fs = [k.encode("utf-8", "surrogateescape") + b":" + str(v).encode("utf-8", "surrogateescape") for k, v in m.items()]
            check(pol_name, fs)
        except Exception as e:
            problems.append(f"{pol_name}: parse error {e!r}"[:120])
    return problems


if __name__ == "__main__":
    ports = [(QUEUE, "queue"), (PROXY, "proxy")]
    only = sys.argv[1:] and sys.argv[1]
    for port, mode in ports:
        for name, extra, kind in variants(AUTHSERV[port]):
            if only and only not in name:
                continue
            clear()
            log = transaction(port, b"<sender@example.org>", [b"<alice@contoso.com>"], build(extra, kind))
            eod = next((r for c, r in log if c == "EOD"), None) or log[-1][1]
            q = wait_queued(1, 8) if eod.startswith("250") else queued()
            res = []
            for m in q:
                res += inspect(m["content"], AUTHSERV[port])
            verdict = "HOLDS" if not res else "BROKEN: " + "; ".join(res)
            print(f"[{mode}] {name}: gw={eod.splitlines()[-1][:70]!r} downstream={len(q)} msg -> {verdict}")
