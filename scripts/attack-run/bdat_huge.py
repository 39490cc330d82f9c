import time
from lib import *
for size in (b"99999999999999999999999", b"200000000 LAST"):
    s = Sess(QUEUE, timeout=150); s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>"); s.cmd(b"RCPT TO:<alice@contoso.com>")
    t = time.time(); s.send(b"BDAT " + size + b"\r\n" + b"x" * 1000)
    try:
        r = s.reply()
    except Exception as e:
        r = repr(e)[:80]
    print(f"BDAT {size.decode()} then 1000 bytes and silence: {r!r} after {time.time()-t:.0f} s")
