#!/usr/bin/env python3
"""The independent verifier of the sender-authentication corpus (issue 12).

What it owns: for each message and its SMTP facts it asks pyspf (SPF), dkimpy (DKIM, ARC)
and authheaders (DMARC policy discovery and alignment, and the Authentication-Results it
writes itself) for their verdicts, maps each library's words to the RFC 8601 result words
(pass, fail, softfail, neutral, none, temperror, permerror, policy), and prints one JSON
object per case. The Rust suite runs it live against the same DNS server as exogate and
compares.

Invariants:
- Every DNS question goes to the one server given with --dns IP:PORT. The libraries get
  resolver functions built on one dnspython Resolver (configure=False, no search list, no
  cache); the module-level defaults they would otherwise reach (dns.resolver's default
  resolver, pyspf's DNSLookup, authheaders' resolve) are replaced; and an audit hook
  aborts the run if any socket is opened towards any other address or any name is
  resolved through the system (getaddrinfo & co). A leak is an error, never a fallback.
- Where a library's answer departs from the RFCs, the RFC reading wins and the departure
  is listed in the case's "disagreements" (tests/fixtures/auth/README.md explains each).
- The Exchange Online trust order (issue 12, DESIGN §11) is read here independently of
  exogate: a verified ARC set from a trusted sealer, else the topmost
  X-Forefront-Antispam-Report / EXO Authentication-Results above Exchange Online's first
  Received, else the SMTP client. SPF is evaluated on the facts that order picks.

It must never reach the system resolver or the network, and never print a verdict it did
not get from a library (the trust order and the word mapping are the only logic here).

Usage:
  auth_oracle.py --dns 127.0.0.1:5353 [--cases tests/fixtures/auth/cases.json] [--id ID ...]
  auth_oracle.py --dns 127.0.0.1:5353 --eml FILE --client-ip IP --helo NAME --mail-from ADDR
                 [--exo-session] [--trusted-sealer microsoft.com ...]
  add --check to compare with the cases' design (origin, intent); exit status 1 on a mismatch.
"""

import argparse
import functools
import ipaddress
import json
import os
import re
import sys
from email.utils import getaddresses

import authheaders
import authheaders.dmarc_lookup as dmarc_lookup
import authres
import dkim
import dkim.util
import dns.exception
import dns.rdatatype
import dns.resolver
import spf

try:  # dkimpy verifies ed25519-sha256 with PyNaCl; without it that case would read "fail"
    import nacl.signing  # noqa: F401
except ImportError:
    sys.exit("auth_oracle: PyNaCl is missing (python3 -m pip install PyNaCl); "
             "dkimpy needs it for ed25519-sha256 signatures")

RESULT_WORDS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}


# ---------------------------------------------------------------- DNS, and nothing else


class DnsLeak(RuntimeError):
    pass


def guard_network(server_ip, server_port):
    """Abort on any socket traffic or name resolution not aimed at the test DNS server."""
    allowed = (str(ipaddress.ip_address(server_ip)), server_port)

    def check_addr(addr):
        if not isinstance(addr, tuple) or len(addr) < 2:
            raise DnsLeak("socket to %r" % (addr,))
        try:
            host = str(ipaddress.ip_address(addr[0]))
        except ValueError:
            raise DnsLeak("socket to %r" % (addr,))
        if (host, addr[1]) != allowed:
            raise DnsLeak("socket to %r, only %r is allowed" % (addr, allowed))

    def numeric(host):
        try:
            ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
            return True
        except (ValueError, TypeError, AttributeError):
            return False

    def hook(event, args):
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            if len(args) > 1 and args[1] is not None:
                check_addr(args[1])
        elif event == "socket.getaddrinfo" and numeric(args[0]):
            pass  # a literal address: nothing is resolved, and connect is checked above
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                       "socket.gethostbyaddr", "socket.getnameinfo"):
            raise DnsLeak("%s%r through the system resolver" % (event, args))

    sys.addaudithook(hook)


class Dns:
    """One dnspython Resolver aimed at the test server, with a log of every question so
    that a library's "no record" can be told apart from "the server failed"."""

    def __init__(self, ip, port, timeout=3.0):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [ip]
        r.port = port
        r.timeout = timeout
        r.lifetime = timeout
        r.search = []
        r.use_search_by_default = False
        r.retry_servfail = False
        r.cache = None
        self.resolver = r
        self.log = []

    def resolve(self, name, rdtype="A", *args, **kwargs):
        """dns.resolver.resolve's signature; logs the outcome and re-raises as dnspython does."""
        qname = str(name).rstrip(".").lower()
        qtype = dns.rdatatype.to_text(dns.rdatatype.from_text(rdtype)) if isinstance(rdtype, str) else \
            dns.rdatatype.to_text(rdtype)
        kwargs.pop("lifetime", None)
        kwargs.pop("search", None)
        raise_on_no_answer = kwargs.pop("raise_on_no_answer", True)
        try:
            answer = self.resolver.resolve(qname + ".", qtype, raise_on_no_answer=raise_on_no_answer,
                                           search=False)
        except dns.resolver.NXDOMAIN:
            self.log.append((qname, qtype, "nxdomain"))
            raise
        except dns.resolver.NoAnswer:
            self.log.append((qname, qtype, "nodata"))
            raise
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            self.log.append((qname, qtype, "error: %s" % type(e).__name__))
            raise
        self.log.append((qname, qtype, "answer" if answer.rrset is not None else "nodata"))
        return answer

    def outcome(self, name, qtype="TXT"):
        name = name.rstrip(".").lower()
        for qname, t, result in reversed(self.log):
            if qname == name and t == qtype:
                return result
        return None

    def dkim_txt(self, name, timeout=5):
        """dkimpy's dnsfunc: the first TXT record's strings joined, None for no record; a
        server failure becomes dkim.DnsTimeoutError (dkimpy then says False, and the log
        tells us it was temporary)."""
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = self.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            raise dkim.DnsTimeoutError(str(e))
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    def spf_lookup(self, name, qtype, strict=True, timeout=30):
        """pyspf's DNSLookup contract: [((name, qtype), value), ...]; server failures are
        spf.TempError, absent names and types an empty list."""
        out = []
        try:
            answer = self.resolve(name, qtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return out
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            raise spf.TempError("DNS " + str(e))
        for rdata in answer:
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out


def install(dnsobj):
    """Point every library at `dnsobj`, and nothing else."""
    dns.resolver.default_resolver = dnsobj.resolver  # dkimpy's and authheaders' defaults
    dns.resolver.resolve = dnsobj.resolve
    spf.DNSLookup = dnsobj.spf_lookup
    dmarc_lookup.resolve = dnsobj.resolve
    fixed = org_domain_with_default_rule(dmarc_lookup.get_org_domain)
    dmarc_lookup.get_org_domain = fixed
    authheaders.get_org_domain = fixed


def org_domain_with_default_rule(psl_org_domain):
    """publicsuffix2 2.20191221 (used by authheaders 0.16) returns only the TLD for a name
    whose TLD is not in its list (alpha.test -> "test"); the Public Suffix List algorithm's
    default rule "*" makes the TLD the suffix, so the organisational domain is the TLD plus
    one label (alpha.test). Without this every .test domain would align with every other."""

    @functools.lru_cache(maxsize=None)  # authheaders re-reads the whole list on every call
    def org_domain(domain):
        domain = domain.rstrip(".").lower()
        found = psl_org_domain(domain)
        labels = domain.split(".")
        if found and "." not in found and len(labels) >= 2:
            return ".".join(labels[-2:])
        return found

    return org_domain


# ---------------------------------------------------------------- header helpers


def header_fields(msg):
    """[(name, unfolded value)] top to bottom."""
    head = msg.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    fields = []
    for line in re.split(r"\r\n(?![ \t])", head):
        if ":" in line:
            name, value = line.split(":", 1)
            fields.append((name.strip(), re.sub(r"\r\n[ \t]", " ", value).strip()))
    return fields


def tags(value):
    try:
        return {k.decode(): v.decode() for k, v in dkim.util.parse_tag_value(value.encode()).items()}
    except Exception:
        return {}


def split_results(value):
    """Split an A-R/AAR value on ';' outside comments and quotes."""
    parts, depth, quote, cur = [], 0, False, ""
    for ch in value:
        if ch == '"' and depth == 0:
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")" and depth:
            depth -= 1
        if ch == ";" and depth == 0 and not quote:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def exo_authserv(value):
    """The authserv-id of an Authentication-Results value, or None when the value starts
    with a result (Exchange Online's own form, Reading A)."""
    first = re.sub(r"\([^)]*\)", "", split_results(value)[0] if value else "").split()
    if not first:
        return ""
    if "=" in first[0]:
        return None
    return first[0].lower()


def claims(value):
    """method -> result word of an A-R or AAR value, read with authres (given a placeholder
    authserv-id when EXO wrote none) plus the sender IP from the spf clause."""
    v = re.sub(r"^\s*i=\d+\s*;", "", value)
    if exo_authserv(v) is None:
        v = "exo.invalid; " + v
    out = {}
    try:
        parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + v)
        for r in parsed.results:
            out.setdefault(r.method, r.result)
            for p in r.properties:
                if r.method == "spf" and p.type == "smtp" and p.name == "remote-ip":
                    out["ip"] = p.value
    except Exception as e:
        out["parse_error"] = str(e)
    m = re.search(r"spf=\w+\s*\(sender ip is ([0-9A-Fa-f:.]+)\)", value, re.I)
    if m and "ip" not in out:
        out["ip"] = m.group(1)
    return out


def valid_ip(text):
    try:
        return str(ipaddress.ip_address(text))
    except (ValueError, TypeError):
        return None


EXO_RECEIVED = re.compile(r"\bby\s+\S+\.(?:protection\.outlook\.com|prod\.outlook\.com|"
                          r"prod\.exchangelabs\.com)\b", re.I)
EXO_AUTHSERV_IDS = (None, "mx.microsoft.com")  # Reading A (none) and Reading B


# ---------------------------------------------------------------- verdicts


def spf_verdict(ip, mail_from, helo):
    result, explanation = spf.check2(i=ip, s=mail_from, h=helo, timeout=20, querytime=20)
    result = result.lower()
    assert result in RESULT_WORDS, result
    return result, explanation


def dkim_verdicts(msg, dnsobj):
    out = []
    sigs = [v for n, v in header_fields(msg) if n.lower() == "dkim-signature"]
    for idx, value in enumerate(sigs):
        t = tags(value)
        d, s = t.get("d", ""), t.get("s", "")
        keyname = "%s._domainkey.%s" % (s, d)
        reason = ""
        try:
            ok = dkim.DKIM(msg, minkey=1024).verify(idx=idx, dnsfunc=dnsobj.dkim_txt)
            result = "pass" if ok else None
        except dkim.KeyFormatError as e:
            result, reason = "permerror", str(e)
        except dkim.ValidationError as e:
            result, reason = "fail", str(e)
        except (dkim.MessageFormatError, dkim.ParameterError) as e:
            result, reason = "neutral", str(e)  # RFC 8601 §2.7.1: signature not processable
        except dkim.DKIMException as e:
            result, reason = "fail", str(e)
        if result is None:
            result, reason = classify_dkim_false(dnsobj, keyname)
        out.append({"domain": d, "selector": s, "result": result, "reason": reason})
    return out


def classify_dkim_false(dnsobj, keyname):
    """dkimpy answers False for a bad signature and for every key problem alike; the key
    lookup tells them apart (RFC 6376 §6.1.2)."""
    outcome = dnsobj.outcome(keyname)
    if outcome is None or outcome.startswith("error"):
        return "temperror", "key lookup failed: %s" % outcome
    if outcome in ("nxdomain", "nodata"):
        return "permerror", "no key record (%s)" % outcome
    txt = dnsobj.dkim_txt(keyname)
    if txt is not None and tags(txt.decode("utf-8", "replace")).get("p", None) == "":
        return "permerror", "key revoked (empty p=)"
    try:
        dkim.evaluate_pk(keyname.encode(), txt)
    except dkim.KeyFormatError as e:
        return "permerror", "key record unusable: %s" % e
    except Exception as e:  # dkimpy raises bare errors for some malformed records
        return "permerror", "key record unusable: %s" % e
    return "fail", "signature did not verify"


def arc_verdict(msg, dnsobj, disagreements):
    seals = [tags(v) for n, v in header_fields(msg) if n.lower() == "arc-seal"]
    if not seals:
        return {"arc": "none", "arc_sets": 0, "arc_sealer": None, "reason": ""}
    cv, _, reason = dkim.arc_verify(msg, dnsfunc=dnsobj.dkim_txt)
    if cv is None:
        # dkimpy: "None, for a chain that has ended" (a set with cv=fail); RFC 8617 §5.2
        # step 2 makes that a failed chain. (authheaders writes arc=none for it.)
        disagreements.append("arc: dkimpy returns None for a chain with cv=fail and "
                             "authheaders writes arc=none; RFC 8617 §5.2 says fail")
        cv = b"fail"
    newest = max(seals, key=lambda t: int(t.get("i", "0")) if t.get("i", "").isdigit() else 0)
    return {"arc": cv.decode().lower(), "arc_sets": int(newest.get("i", "0") or 0),
            "arc_sealer": newest.get("d"), "reason": reason}


def from_domain(msg):
    values = [v for n, v in header_fields(msg) if n.lower() == "from"]
    addrs = [a for _, a in getaddresses(values) if "@" in a]
    domains = {a.rsplit("@", 1)[1].lower() for a in addrs}
    return domains.pop() if len(domains) == 1 else None


def dmarc_verdict(msg, spf_result, spf_identity, dkims, dnsobj, disagreements):
    fd = from_domain(msg)
    if fd is None:
        return {"dmarc": "none", "dmarc_policy": None, "dmarc_pct": None, "dmarc_domain": None,
                "dmarc_record_domain": None}
    record, orgdomain = dmarc_lookup.receiver_record(fd)
    looked = ["_dmarc." + fd] + (["_dmarc." + orgdomain] if orgdomain and orgdomain != fd else [])
    failed = [q for q in looked if (dnsobj.outcome(q) or "").startswith("error")]
    if not record and failed:
        # authheaders turns a server failure into "no record" (none); RFC 7489 §11.2 has
        # temperror for it.
        disagreements.append("dmarc: authheaders reads the failed lookup of %s as no record "
                             "(none); the oracle says temperror" % ", ".join(failed))
        return {"dmarc": "temperror", "dmarc_policy": None, "dmarc_pct": None, "dmarc_domain": fd,
                "dmarc_record_domain": None}
    if not record or not record.get("p"):
        return {"dmarc": "none", "dmarc_policy": None, "dmarc_pct": None, "dmarc_domain": fd,
                "dmarc_record_domain": None}

    def ask(dkim_d):
        s = authres.SPFAuthenticationResult(result=spf_result, smtp_mailfrom=spf_identity)
        d = authres.DKIMAuthenticationResult(result="pass", header_d=dkim_d) if dkim_d else None
        return authheaders.dmarc_per_from(fd, spf_result=s, dkim_result=d)

    passing = [k["domain"] for k in dkims if k["result"] == "pass"]
    answers = [ask(d) for d in passing] or [ask(None)]
    result = "pass" if any(a[0] == "pass" for a in answers) else answers[0][0]
    first_only = ask(dkims[0]["domain"] if dkims and dkims[0]["result"] == "pass" else None)[0]
    if first_only != result:
        disagreements.append("dmarc: authheaders.authenticate_message judges only the first "
                             "DKIM-Signature and would say %s" % first_only)
    at_from = orgdomain in (False, None, fd)
    policy = record["p"] if at_from else record.get("sp", record["p"])
    lib_policy = answers[0][3]
    if lib_policy != policy:
        disagreements.append("dmarc_policy: authheaders says %s; RFC 7489 §6.3 gives %s (%s)" % (
            lib_policy, policy, "record at the From domain, sp= does not apply" if at_from
            else "From is below the organisational domain"))
    try:
        pct = int(record.get("pct", "100"))
    except ValueError:
        pct = 100
    return {"dmarc": result, "dmarc_policy": policy, "dmarc_pct": pct, "dmarc_domain": fd,
            "dmarc_record_domain": fd if at_from else orgdomain}


def exo_origin(msg, smtp, exo_session, arc, trusted):
    """The trust order of issue 12: which IP/HELO stand for the original sender, and what
    Exchange Online claimed about it."""
    smtp_origin = {"source": "smtp", "ip": smtp["client_ip"], "helo": smtp["helo"]}
    if not exo_session:
        return smtp_origin, None
    fields = header_fields(msg)
    boundary = None
    for i, (name, value) in enumerate(fields):
        if name.lower() == "received" and EXO_RECEIVED.search(value):
            boundary = i
    if boundary is None:
        return smtp_origin, None
    exo_fields = fields[:boundary + 1]
    xfar = next((v for n, v in exo_fields if n.lower() == "x-forefront-antispam-report"), None)
    xfar_tags = dict(p.split(":", 1) for p in (xfar or "").split(";") if ":" in p)
    helo_h = xfar_tags.get("H") or None

    if arc["arc"] == "pass" and (arc["arc_sealer"] or "").lower() in trusted:
        n = arc["arc_sets"]
        aar = next((v for name, v in fields if name.lower() == "arc-authentication-results"
                    and re.match(r"\s*i\s*=\s*%d\s*;" % n, v)), None)
        c = claims(aar or "")
        ip = valid_ip(c.get("ip"))
        if ip:
            return {"source": "arc", "ip": ip, "helo": helo_h}, c

    ar = next((v for n, v in exo_fields if n.lower() == "authentication-results"
               and exo_authserv(v) in EXO_AUTHSERV_IDS), None)
    ip = valid_ip(xfar_tags.get("CIP"))
    if ip:
        return {"source": "forefront", "ip": ip, "helo": helo_h}, claims(ar) if ar else None
    return smtp_origin, None


def authheaders_header(msg, ip, mail_from, helo):
    """authheaders' own Authentication-Results for the same facts (first signature only)."""
    try:
        return authheaders.authenticate_message(msg, "oracle.test", spf=True, dkim=True, arc=True,
                                                dmarc=True, ip=ip, mail_from=mail_from, helo=helo)
    except Exception as e:
        return "error: %s: %s" % (type(e).__name__, e)


def compare_with_authheaders(out, disagreements):
    """List where authheaders' own Authentication-Results (its authenticate_message, fed the
    same facts) differs from the oracle, for the methods no note above explains already."""
    explained = {d.split(":", 1)[0].split()[0] for d in disagreements}
    if out["authheaders"].startswith("error:"):
        disagreements.append("authheaders: authenticate_message failed for these facts (%s)"
                             % out["authheaders"][7:])
        return
    try:
        parsed = authres.AuthenticationResultsHeader.parse(out["authheaders"])
    except Exception as e:
        disagreements.append("authheaders: its header does not parse (%s)" % e)
        return
    lib = {}
    for r in parsed.results:
        lib.setdefault(r.method, r)
    mine = {"spf": out["spf"], "dkim": out["dkim"][0]["result"] if out["dkim"] else "none",
            "arc": out["arc"], "dmarc": out["dmarc"]}
    for method, word in mine.items():
        theirs = lib[method].result if method in lib else None
        if theirs != word and method not in explained:
            disagreements.append("%s: authheaders' own header says %s, the oracle %s%s" % (
                method, theirs, word, " (first signature)" if method == "dkim" else ""))


def verify(msg, smtp, exo_session, trusted, dnsobj, cid=None):
    dnsobj.log.clear()
    disagreements = []
    arc = arc_verdict(msg, dnsobj, disagreements)
    origin, exo_claims = exo_origin(msg, smtp, exo_session, arc, trusted)
    helo = origin["helo"] or smtp["helo"]
    mail_from = smtp["mail_from"]
    spf_result, spf_expl = spf_verdict(origin["ip"], mail_from, helo)
    spf_identity = mail_from if mail_from else "postmaster@" + helo
    dkims = dkim_verdicts(msg, dnsobj)
    dmarc = dmarc_verdict(msg, spf_result, spf_identity, dkims, dnsobj, disagreements)
    lib_ar = authheaders_header(msg, origin["ip"], mail_from, helo)
    # dnspython's error texts name the server's port, which changes from run to run.
    lib_ar = lib_ar.replace("%s@%d" % (dnsobj.resolver.nameservers[0], dnsobj.resolver.port),
                            "%s@PORT" % dnsobj.resolver.nameservers[0])
    out = {
        "id": cid,
        "origin": origin,
        "spf": spf_result,
        "spf_identity": spf_identity.rsplit("@", 1)[-1],
        "dkim": dkims,
    }
    out.update(dmarc)
    out.update({"arc": arc["arc"], "arc_sets": arc["arc_sets"], "arc_sealer": arc["arc_sealer"],
                "exo_claims": exo_claims, "authheaders": lib_ar,
                "disagreements": disagreements,
                "dns_errors": sorted({q for q, _, r in dnsobj.log if r.startswith("error")})})
    compare_with_authheaders(out, disagreements)
    return out


# ---------------------------------------------------------------- design check


def check_against_design(case, got):
    """Mismatches between what a case was built to show and what the libraries say."""
    problems = []
    want = case.get("intent", {})
    for k in ("spf", "dmarc", "dmarc_policy", "arc", "dmarc_pct"):
        if k in want and want[k] != got.get(k):
            problems.append("%s: built for %r, oracle %r" % (k, want[k], got.get(k)))
    wd = [(d["domain"], d["selector"], d["result"]) for d in want.get("dkim", [])]
    gd = [(d["domain"], d["selector"], d["result"]) for d in got["dkim"]]
    if "dkim" in want and wd != gd:
        problems.append("dkim: built for %r, oracle %r" % (wd, gd))
    wo = case.get("origin")
    if wo and {k: wo[k] for k in ("source", "ip")} != {k: got["origin"][k] for k in ("source", "ip")}:
        problems.append("origin: built for %r, oracle %r" % (wo, got["origin"]))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dns", required=True, help="IP:PORT of the test DNS server ([v6]:PORT for IPv6)")
    ap.add_argument("--cases", help="cases.json (default: tests/fixtures/auth/cases.json)")
    ap.add_argument("--id", action="append", help="only this case (repeatable)")
    ap.add_argument("--eml", help="one message instead of the corpus")
    ap.add_argument("--client-ip")
    ap.add_argument("--helo")
    ap.add_argument("--mail-from", default="")
    ap.add_argument("--exo-session", action="store_true")
    ap.add_argument("--trusted-sealer", action="append")
    ap.add_argument("--check", action="store_true", help="compare with the cases' design; exit 1 on a mismatch")
    args = ap.parse_args()

    m = re.match(r"^\[?([0-9A-Fa-f:.]+?)\]?:(\d+)$", args.dns)
    if not m:
        ap.error("--dns wants IP:PORT")
    server_ip, server_port = str(ipaddress.ip_address(m.group(1))), int(m.group(2))
    guard_network(server_ip, server_port)
    dnsobj = Dns(server_ip, server_port)
    install(dnsobj)

    results, failures = [], 0
    if args.eml:
        if not (args.client_ip and args.helo):
            ap.error("--eml needs --client-ip and --helo")
        with open(args.eml, "rb") as f:
            msg = f.read()
        smtp = {"client_ip": args.client_ip, "helo": args.helo, "mail_from": args.mail_from}
        trusted = {s.lower() for s in (args.trusted_sealer or ["microsoft.com"])}
        results.append(verify(msg, smtp, args.exo_session, trusted, dnsobj, os.path.basename(args.eml)))
    else:
        path = args.cases or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                          "auth", "cases.json")
        with open(path) as f:
            doc = json.load(f)
        base = os.path.dirname(os.path.abspath(path))
        trusted = {s.lower() for s in (args.trusted_sealer or doc["dns"]["trusted_arc_sealers"])}
        for case in doc["cases"]:
            if args.id and case["id"] not in args.id:
                continue
            with open(os.path.join(base, case["file"]), "rb") as f:
                msg = f.read()
            got = verify(msg, case["smtp"], case["exo_session"], trusted, dnsobj, case["id"])
            results.append(got)
            if args.check:
                for p in check_against_design(case, got):
                    failures += 1
                    print("%s: %s" % (case["id"], p), file=sys.stderr)
    json.dump(results, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
