#!/usr/bin/env python3
"""A small SMTP server with STARTTLS that stores what it receives, for
deploy/container-test.sh: the downstream the containerised gateway relays to.

    smtp-sink.py --listen 127.0.0.1:2526 --cert sink.pem --key sink.key --out DIR

Each message is written to DIR/N.eml (the exact bytes after dot-unstuffing)
with DIR/N.json beside it (envelope, whether TLS was on, the client's
address), the .eml first and both by rename, so a reader never sees half a
message. It advertises STARTTLS and no extensions it does not implement. A
test tool for loopback peers only: one thread per session, no limits.
"""

import argparse
import json
import os
import socket
import ssl
import threading


def serve(conn, addr, tls_ctx, out, counter):
    f = conn.makefile("rwb")
    tls = False

    def reply(text):
        f.write(text.encode() + b"\r\n")
        f.flush()

    reply("220 sink.test ESMTP")
    mail_from, rcpts = None, []
    while True:
        line = f.readline()
        if not line:
            return
        cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb = cmd.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            caps = ["sink.test", "8BITMIME"] + ([] if tls else ["STARTTLS"])
            for c in caps[:-1]:
                f.write(f"250-{c}\r\n".encode())
            reply(f"250 {caps[-1]}")
        elif verb == "STARTTLS" and not tls:
            reply("220 go ahead")
            f.close()
            conn = tls_ctx.wrap_socket(conn, server_side=True)
            f = conn.makefile("rwb")
            tls = True
            mail_from, rcpts = None, []
        elif verb == "MAIL":
            mail_from, rcpts = cmd[10:].strip(), []
            reply("250 ok")
        elif verb == "RCPT":
            rcpts.append(cmd[8:].strip())
            reply("250 ok")
        elif verb == "DATA":
            if mail_from is None or not rcpts:
                reply("503 need MAIL and RCPT")
                continue
            reply("354 end with <CRLF>.<CRLF>")
            body = bytearray()
            while True:
                data_line = f.readline()
                if not data_line:
                    return
                if data_line == b".\r\n":
                    break
                if data_line.startswith(b"."):
                    data_line = data_line[1:]
                body += data_line
            with counter["lock"]:
                counter["n"] += 1
                n = counter["n"]
            base = os.path.join(out, str(n))
            meta = {"from": mail_from, "rcpt": rcpts, "tls": tls, "peer": addr[0]}
            for suffix, content in ((".eml", bytes(body)), (".json", json.dumps(meta).encode())):
                with open(base + suffix + ".tmp", "wb") as w:
                    w.write(content)
                os.rename(base + suffix + ".tmp", base + suffix)
            reply(f"250 stored as {n}")
            mail_from, rcpts = None, []
        elif verb == "RSET":
            mail_from, rcpts = None, []
            reply("250 ok")
        elif verb == "NOOP":
            reply("250 ok")
        elif verb == "QUIT":
            reply("221 bye")
            return
        else:
            reply("502 not implemented")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv = socket.create_server((host, int(port)))
    counter = {"n": 0, "lock": threading.Lock()}
    print(f"listening on {a.listen}", flush=True)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=session, args=(conn, addr, ctx, a.out, counter), daemon=True).start()


def session(conn, addr, ctx, out, counter):
    try:
        serve(conn, addr, ctx, out, counter)
    except (OSError, ssl.SSLError) as e:
        print(f"session from {addr[0]}: {e}", flush=True)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
