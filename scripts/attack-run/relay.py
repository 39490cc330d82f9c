"""Open-relay battery over STARTTLS (the nmap smtp-open-relay list, rewritten
for a gateway that requires TLS, plus the tenant-domain tricks)."""
from lib import *

IP = b"[127.0.0.1]"
D = b"evil.com"
FROMS = [b"<>", b"<antispam@" + IP + b">", b"<antispam@" + D + b">", b"<relaytest@contoso.com>",
         b"<relaytest@contoso.com.evil.com>", b"<relaytest@evil.contoso.com>"]
TOS = [
    b"<relaytest@" + D + b">",
    b"<\"relaytest@" + D + b"\">",
    b"<\"relaytest%" + D + b"\">",
    b"<relaytest%" + D + b"@" + IP + b">",
    b"<\"relaytest@" + D + b"\"@" + IP + b">",
    b"<relaytest%" + D + b"@contoso.com>",
    b"<" + D + b"!relaytest>",
    b"<" + D + b"!relaytest@" + IP + b">",
    b"<" + D + b"!relaytest@contoso.com>",
    b"<@" + IP + b":relaytest@" + D + b">",
    b"<@contoso.com:relaytest@" + D + b">",
    b"<relaytest@" + D + b"@contoso.com>",
    b"<relaytest@contoso.com@" + D + b">",
    b"<relaytest@contoso.com." + D + b">",
    b"<relaytest@sub.contoso.com>",
    b"<relaytest@contoso.com.>",
    b"<relaytest@contoso.co>",
    b"<postmaster>",
    b"<postmaster@" + IP + b">",
]

if __name__ == "__main__":
    for port, mode in ((QUEUE, "queue"), (PROXY, "proxy")):
        accepted = []
        total = 0
        for f in FROMS:
            for t in TOS:
                total += 1
                s = Sess(port)
                s.starttls()
                r1 = s.cmd(b"MAIL FROM:" + f)
                r2 = s.cmd(b"RCPT TO:" + t) if r1.startswith("250") else "-"
                s.cmd(b"QUIT")
                s.close()
                if r2.startswith("250"):
                    accepted.append((f, t, r2[:40]))
        print(f"[{mode}] {total} MAIL/RCPT pairs; accepted {len(accepted)}:")
        for a in accepted:
            print("    ", a)
