"""A downstream SMTP server that misbehaves on purpose, for failures a real
MTA will not produce on demand: it speaks ESMTP with STARTTLS (certificate
and key given on the command line), accepts MAIL and the first RCPTs, and
drops the connection without a reply when RCPT number N arrives.

  hangup_server.py PORT CERT KEY N

Prints "ready" once listening, then one line per command it received.
"""
import socket, ssl, sys

port, cert, key, hangup_at = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(16)
print("ready", flush=True)


def session(conn):
    f = conn.makefile("rb")
    conn.sendall(b"220 hangup.test ESMTP\r\n")
    rcpts = 0
    tls = False
    while True:
        line = f.readline()
        if not line:
            return
        verb = line[:4].upper()
        print(line.decode(errors="replace").strip(), flush=True)
        if verb in (b"EHLO", b"HELO"):
            ext = b"" if tls else b"250-STARTTLS\r\n"
            conn.sendall(b"250-hangup.test\r\n" + ext + b"250 PIPELINING\r\n")
        elif verb == b"STAR":
            conn.sendall(b"220 go ahead\r\n")
            conn = ctx.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            tls = True
        elif verb == b"MAIL":
            rcpts = 0
            conn.sendall(b"250 ok\r\n")
        elif verb == b"RCPT":
            rcpts += 1
            if rcpts >= hangup_at:
                conn.close()
                return
            conn.sendall(b"250 ok\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"250 ok\r\n")


while True:
    c, _ = listener.accept()
    try:
        session(c)
    except (OSError, ssl.SSLError) as e:
        print("error", e, flush=True)
    finally:
        try:
            c.close()
        except OSError:
            pass
