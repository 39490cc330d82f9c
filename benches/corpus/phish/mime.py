"""Small, explicit MIME, PDF and ZIP writers for the synthetic phishing generator.

Hand-built rather than `email.mime` so that the generator controls exactly what real phishing
varies: transfer encodings, charsets, encoded words, boundary styles, line endings, attachment
header quirks. Nothing here talks to the network; every byte comes from the caller's inputs.
"""
import base64
import quopri
import struct
import zlib
from email.header import Header


def b64_lines(data: bytes, width: int = 76) -> str:
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width))


def encode_body(text_or_bytes, cte: str, charset: str = "utf-8") -> str:
    data = text_or_bytes if isinstance(text_or_bytes, bytes) else text_or_bytes.encode(charset, "xmlcharrefreplace")
    if cte == "base64":
        return b64_lines(data)
    if cte == "quoted-printable":
        return quopri.encodestring(data).decode("ascii")
    # 7bit/8bit: lines as they are (8bit may carry non-ASCII bytes, decoded back as latin-1 so the
    # final encode round-trips them)
    return data.decode("latin-1")


def encoded_word(text: str, charset: str = "utf-8", enc: str = "b") -> str:
    """RFC 2047 encoded word(s) for a display name or subject, or the text itself when ASCII and
    enc == 'none'."""
    if enc == "none":
        try:
            text.encode("ascii")
            return text
        except UnicodeEncodeError:
            enc = "b"
    if enc == "b":
        return Header(text, charset).encode()
    raw = text.encode(charset)
    out = "".join(chr(c) if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122) else ("_" if c == 32 else f"={c:02X}")
                  for c in raw)
    return f"=?{charset}?Q?{out}?="


class Part:
    """A leaf part: headers (ordered list) and an already encoded body text."""

    def __init__(self, ctype, body, cte="7bit", charset=None, disposition=None, filename=None,
                 cid=None, extra=None, name_param=True):
        self.headers = []
        ct = ctype
        if charset:
            ct += f'; charset="{charset}"'
        if filename and name_param:
            ct += f'; name="{filename}"'
        self.headers.append(("Content-Type", ct))
        if cte:
            self.headers.append(("Content-Transfer-Encoding", cte))
        if disposition:
            d = disposition
            if filename:
                d += f'; filename="{filename}"'
            self.headers.append(("Content-Disposition", d))
        if cid:
            self.headers.append(("Content-ID", f"<{cid}>"))
        for h in extra or []:
            self.headers.append(h)
        self.body = body

    def render(self, nl):
        head = nl.join(f"{k}: {v}" for k, v in self.headers)
        body = self.body.replace("\r\n", "\n").replace("\n", nl)
        return head + nl + nl + body


class Multipart:
    def __init__(self, subtype, parts, boundary, extra_params=""):
        self.subtype, self.parts, self.boundary, self.extra = subtype, parts, boundary, extra_params
        self.headers = [("Content-Type", f'multipart/{subtype};{extra_params} boundary="{boundary}"')]

    def render(self, nl):
        head = nl.join(f"{k}: {v}" for k, v in self.headers)
        chunks = [head, ""]
        if self.subtype == "mixed":
            chunks.append("This is a multi-part message in MIME format.")
        for p in self.parts:
            chunks.append(f"--{self.boundary}")
            chunks.append(p.render(nl))
        chunks.append(f"--{self.boundary}--")
        chunks.append("")
        return nl.join(chunks)


def message(headers, root, nl="\r\n") -> bytes:
    """Top-level message: our header list, then the root part's own headers and body."""
    rendered = root.render(nl)
    text = nl.join(f"{k}: {v}" for k, v in headers) + nl + rendered
    if not text.endswith(nl):
        text += nl
    return text.encode("latin-1", "strict") if _is_latin1(text) else text.encode("utf-8")


def _is_latin1(s):
    try:
        s.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


# --- PDF -----------------------------------------------------------------------------------

def _pdf_str(s: str) -> str:
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf(lines, link=None, qr_matrix=None, title="Document") -> bytes:
    """One-page PDF: text lines (Helvetica), an optional clickable URI rectangle around a
    'button' line, and an optional QR code drawn as filled squares (vector, no image)."""
    ops = ["BT /F1 20 Tf 72 740 Td", _pdf_str(lines[0]) + " Tj", "/F1 11 Tf 0 -28 Td"]
    for ln in lines[1:]:
        ops.append(_pdf_str(ln) + " Tj 0 -16 Td")
    ops.append("ET")
    annots = ""
    if link:
        ops += ["0.0 0.47 0.83 rg 72 420 220 36 re f", "BT /F1 14 Tf 1 1 1 rg 92 433 Td",
                _pdf_str(link[0]) + " Tj ET"]
        annots = f"/Annots [5 0 R]"
    if qr_matrix:
        n = len(qr_matrix)
        size = 180.0
        m = size / n
        ox, oy = 72, 200
        ops.append("0 0 0 rg")
        for r, row in enumerate(qr_matrix):
            for c, v in enumerate(row):
                if v:
                    ops.append(f"{ox + c * m:.2f} {oy + (n - 1 - r) * m:.2f} {m:.2f} {m:.2f} re")
        ops.append("f")
    content = zlib.compress("\n".join(ops).encode("latin-1", "replace"))
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        f"/Resources << /Font << /F1 6 0 R >> >> {annots} >>",
        None,  # content stream
        f"<< /Type /Annot /Subtype /Link /Rect [72 420 292 456] /Border [0 0 0] "
        f"/A << /S /URI /URI {_pdf_str(link[1]) if link else '()'} >> >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title {_pdf_str(title)} /Producer (Microsoft: Print To PDF) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offs = []
    for i, o in enumerate(objs, start=1):
        offs.append(len(out))
        if o is None:
            out += f"{i} 0 obj\n<< /Length {len(content)} /Filter /FlateDecode >>\nstream\n".encode()
            out += content + b"\nendstream\nendobj\n"
        else:
            out += f"{i} 0 obj\n{o}\nendobj\n".encode("latin-1", "replace")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for o in offs:
        out += f"{o:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 7 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# --- ZIP (stored or deflated, optionally with traditional PKWARE encryption) ---------------
# Python's zipfile reads but cannot write encrypted archives; the traditional ("ZipCrypto")
# scheme of APPNOTE.TXT §6.1 is 30 lines, so it is written out here.

class _ZipCrypto:
    def __init__(self, password: bytes):
        self.k = [0x12345678, 0x23456789, 0x34567890]
        for c in password:
            self._update(c)

    def _crc(self, crc, b):
        return zlib.crc32(bytes([b]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def _update(self, c):
        k0, k1, k2 = self.k
        k0 = self._crc(k0, c)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = self._crc(k2, (k1 >> 24) & 0xFF)
        self.k = [k0, k1, k2]

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for p in data:
            t = (self.k[2] | 2) & 0xFFFF
            out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            self._update(p)
        return bytes(out)


def zip_archive(entries, password=None, rng=None, dostime=(2026, 11, 3, 9, 41, 12)) -> bytes:
    """entries: [(name, bytes)]. Deflated; encrypted with ZipCrypto when password is given."""
    y, mo, d, h, mi, s = dostime
    dtime = (h << 11) | (mi << 5) | (s // 2)
    ddate = ((y - 1980) << 9) | (mo << 5) | d
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        crc = zlib.crc32(data) & 0xFFFFFFFF
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        comp = co.compress(data) + co.flush()
        flag = 0
        if password:
            flag |= 1
            zc = _ZipCrypto(password.encode())
            header = bytes(rng.randrange(256) for _ in range(11)) + bytes([crc >> 24])
            comp = zc.encrypt(header + comp)
        nb = name.encode()
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flag, 8, dtime, ddate, crc, len(comp), len(data), len(nb), 0)
        out += nb + comp
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flag, 8, dtime, ddate, crc, len(comp),
                               len(data), len(nb), 0, 0, 0, 0, 0x20, off)
        central += nb
    cd_off = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_off, 0)
    return bytes(out)
