"""A second `exogate run` on the live state dir while transactions are in flight."""
import subprocess, threading, time, os
from lib import *
EXO = os.environ.get("EXOGATE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/debug/exogate"))
clear()
results = []
def tx(i):
    s = Sess(QUEUE); s.starttls()
    s.cmd(b"MAIL FROM:<sender@example.org>"); s.cmd(b"RCPT TO:<alice@contoso.com>"); s.cmd(b"DATA")
    data = body(text=b"x" * 200000 + b"\r\n")
    s.send(data[: len(data) // 2]); time.sleep(3); s.send(data[len(data) // 2 :] + b"\r\n.\r\n")
    results.append(s.reply()[:3]); s.cmd(b"QUIT"); s.close()
ts = [threading.Thread(target=tx, args=(i,)) for i in range(20)]
[t.start() for t in ts]
time.sleep(1.5)
spool_before = sorted(os.listdir("/tmp/atk/gw-queue/state"))
p = subprocess.run([EXO, "run", "--config", "/tmp/atk/gw-queue/gateway.toml"], capture_output=True, text=True, timeout=60)
print("second run exit", p.returncode, "stderr tail:", p.stderr.strip().splitlines()[-2:])
for cmd in (["queue", "flush"], ["queue", "delete", "--older-than", "0s"], ["queue", "list"]):
    c = subprocess.run([EXO] + cmd + ["--config", "/tmp/atk/gw-queue/gateway.toml"], capture_output=True, text=True, timeout=60)
    print(" ".join(cmd), "->", c.returncode, (c.stdout + c.stderr).strip().splitlines()[-2:])
[t.join() for t in ts]
print("replies:", {r: results.count(r) for r in set(results)})
q = wait_queued(20, 30)
print("downstream messages:", len(q))
