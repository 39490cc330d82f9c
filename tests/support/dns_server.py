"""A minimal authoritative DNS responder for tests (UDP and TCP), so the
gateway's resolver (hickory) can be pointed at known MX and A records without
touching real DNS. Answers from a JSON zone given on the command line:

  {"contoso.com": {"MX": [[10, "mx1.contoso.com"]]}, "mx1.contoso.com": {"A": ["127.0.0.1"]}}

Names not in the zone get NXDOMAIN; known names without the asked type get an
empty NOERROR answer (NODATA). Prints "ready PORT" once listening.
"""
import json, socket, struct, sys, threading

zone = {k.lower().rstrip("."): v for k, v in json.loads(sys.argv[2]).items()}
port = int(sys.argv[1])

def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def decode_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack(">H", msg[off:off + 2])[0] & 0x3FFF
            name, _ = decode_name(msg, ptr)
            labels.append(name)
            return ".".join(labels), off + 2
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n

def answer(query):
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    name, off = decode_name(query, 12)
    qtype, qclass = struct.unpack(">HH", query[off:off + 4])
    question = query[12:off + 4]
    key = name.lower().rstrip(".")
    records = []
    rcode = 0
    if key not in zone:
        rcode = 3
    else:
        entry = zone[key]
        if qtype == 15:
            for pref, host in entry.get("MX", []):
                rdata = struct.pack(">H", pref) + encode_name(host)
                records.append((15, rdata))
        elif qtype == 1:
            for ip in entry.get("A", []):
                records.append((1, socket.inet_aton(ip)))
        elif qtype == 28:
            for ip in entry.get("AAAA", []):
                records.append((28, socket.inet_pton(socket.AF_INET6, ip)))
    header = struct.pack(">HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, len(records), 0, 0)
    body = b""
    for rtype, rdata in records:
        body += encode_name(name) + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata
    return header + question + body

def serve_udp(sock):
    while True:
        data, addr = sock.recvfrom(4096)
        try:
            sock.sendto(answer(data), addr)
        except Exception as e:
            print("bad query:", e, file=sys.stderr)

def serve_tcp(sock):
    while True:
        conn, _ = sock.accept()
        try:
            n = struct.unpack(">H", conn.recv(2))[0]
            data = b""
            while len(data) < n:
                data += conn.recv(n - len(data))
            reply = answer(data)
            conn.sendall(struct.pack(">H", len(reply)) + reply)
        except Exception as e:
            print("bad tcp query:", e, file=sys.stderr)
        finally:
            conn.close()

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", port))
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", port))
tcp.listen(16)
threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
print("ready", port, flush=True)
serve_udp(udp)
