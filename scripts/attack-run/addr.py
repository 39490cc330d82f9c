"""Addresses and parameters, queue and proxy mode: what the client wrote, the
gateway's reply, and the envelope the downstream Postfix queued."""
import sys
from lib import *

RCPTS = [
    rb'<"victim@evil.com> ORCPT=rfc822;x"@contoso.com>',
    rb'<"victim@evil.com>"@contoso.com>',
    rb'<"victim@evil.com"@contoso.com>',
    rb'<"v@evil.com>,<w@evil.com"@contoso.com>',
    rb'<"a> NOTIFY=NEVER"@contoso.com>',
    rb'<"a\"> NOTIFY=NEVER"@contoso.com>',
    rb'<"a\\"@contoso.com>',
    rb'<"john doe"@contoso.com>',
    rb'<"a\\\" b"@contoso.com>',
    rb'<"\r"@contoso.com>',
    rb'<"a' + b"\t" + rb'b"@contoso.com>',
    rb'<victim@evil.com@contoso.com>',
    rb'<victim@contoso.com@evil.com>',
    rb'<victim%evil.com@contoso.com>',
    rb'<evil.com!victim@contoso.com>',
    rb'<evil.com!victim>',
    rb'<victim%contoso.com@evil.com>',
    rb'<@contoso.com:victim@evil.com>',
    rb'<@evil.com:alice@contoso.com>',
    rb'<@evil.com,@x.net:alice@contoso.com>',
    rb'<alice@contoso.com.>',
    rb'<alice@CONTOSO.COM>',
    rb'<alice@contoso.com..>',
    rb'<alice@[127.0.0.1]>',
    rb'<alice@contoso.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@contoso.com',
    rb'<alice@contoso.com> ORCPT=rfc822;victim+40evil.com',
    rb'<alice@contoso.com> ORCPT=rfc822;x+0D+0ARCPT+20TO:<v@evil.com>',
    rb'<alice@contoso.com> NOTIFY=NEVER NOTIFY=SUCCESS',
    rb'<alice@contoso.com>  NOTIFY=NEVER',
    rb'<alice@contoso.com>' + b'\t' + rb'NOTIFY=NEVER',
    rb'<alice@contoso.com> X-FOO=bar',
    rb'alice@contoso.com',
    rb' <alice@contoso.com>',
    rb'<alice@contoso.com>>',
    rb'<<alice@contoso.com>',
    rb'<alice@contoso.com> <victim@evil.com>',
    rb'<alice@contoso.com>,<victim@evil.com>',
    rb'<alice@contoso.com' + b'\x00' + rb'>',
    rb'<alice' + b'\x00' + rb'@contoso.com>',
    '<jörg@contoso.com>'.encode(),
    '<"jörg müller"@contoso.com>'.encode(),
    '<alice@fabri\u212aam.com>'.encode(),
    '<alice@ｃontoso.com>'.encode(),
]

MAILS = [
    rb'<"attacker> RET=FULL ENVID=forged"@example.org>',
    rb'<sender@example.org> RET=FULL ENVID=a+0D+0AX-Injected:+20yes',
    rb'<sender@example.org> ENVID=<x>',
    rb'<sender@example.org> SIZE=999999999999999999999',
    rb'<sender@example.org> SIZE=1 SIZE=2',
    rb'<sender@example.org> BODY=8BITMIME SMTPUTF8',
    rb'<sender@example.org> AUTH=<victim@evil.com>',
    rb'<sender@example.org> AUTH=victim@evil.com',
    rb'<"a\"b"@example.org>',
    rb'<@evil.com:sender@example.org>',
    rb'<>',
    rb'<> RET=HDRS',
]


def one(port, mail, rcpt, smtputf8=False):
    clear()
    m = mail + (b" SMTPUTF8" if smtputf8 and b"SMTPUTF8" not in mail else b"")
    log = transaction(port, m, [rcpt], body())
    accepted = any(c == "EOD" and r.startswith("250") for c, r in log)
    q = wait_queued(1, 8) if accepted else queued()
    return log, q


def show(mode, port, mail, rcpt):
    utf = any(b > 127 for b in mail + rcpt)
    log, q = one(port, mail, rcpt, utf)
    replies = " | ".join(f"{c.split(' ')[0]}:{r.splitlines()[-1][:60]}" for c, r in log[2:] if c != "QUIT")
    down = "; ".join(f"from=<{m['sender']}> to={m['rcpts']}" for m in q) or "nothing"
    print(f"[{mode}] MAIL {mail!r} RCPT {rcpt!r}\n    gw: {replies}\n    downstream: {down}")
    for m in q:
        for l in m["env"].splitlines():
            if l.startswith(("original_recipient", "dsn_", "notify", "recipient:", "sender:", "named_attribute")):
                print("      env", l)


if __name__ == "__main__":
    modes = [("queue", QUEUE), ("proxy", PROXY)]
    for mode, port in modes:
        for r in RCPTS:
            show(mode, port, b"<sender@example.org>", r)
        for m in MAILS:
            show(mode, port, m, b"<alice@contoso.com>")
