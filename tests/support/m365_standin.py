#!/usr/bin/env python3
"""A local HTTPS stand-in for the Microsoft identity platform token endpoint,
Microsoft Graph v1.0 mail and Exchange Web Services, for testing exogate's
post-delivery remediation client against Microsoft's documented shapes.

    m365_standin.py --config CONFIG.json --cert CERT.pem --key KEY.pem --log LOG.jsonl
                    [--host 127.0.0.1] [--port 0]

Prints "ready PORT" on stdout once it listens. Base URLs (PORT as printed):
    token   https://HOST:PORT/{tenant}/oauth2/v2.0/token
    graph   https://HOST:PORT/v1.0
    ews     https://HOST:PORT/EWS/Exchange.asmx
    admin   https://HOST:PORT/_standin/state (GET), /_standin/config (POST)

Every request is checked against the documented shape (method, path, query,
headers, JSON or SOAP body) and appended to LOG.jsonl with the peer's source
address and User-Agent; secrets are redacted there. Anything malformed gets a
400 whose text says what was wrong, in the API's own error envelope. What the
stand-in does beyond the documentation (status codes Microsoft does not
document, deliberate strictness) is said next to the code.

CONFIG.json (POST /_standin/config replaces any of its top-level keys later):
  {"token_lifetime": 3599,                 expires_in of issued tokens (seconds)
   "expect_user_agent": "exogate/1 (...)", optional: any other User-Agent is a 400
   "tenants": {"<tenant GUID>": {
       "domains": ["contoso.com"],         token endpoint accepts these for {tenant}
       "ews": {"enabled": true, "disabled_status": 403},
       "apps": {"<client id>": {
           "secret": "...",                 client_secret, and/or
           "certificates": ["cert.pem"],    certificates a client_assertion may use
           "graph_roles": ["Mail.ReadWrite"], "ews_roles": ["full_access_as_app"],
           "mailboxes": null}},             or a list: the app's RBAC/access-policy scope
       "mailboxes": {"dana@contoso.com": {
           "id": "<user GUID>", "ews_enabled": true,
           "folders": [{"displayName": "Quarantine", "id": "<folder id>"}],
           "messages": [{"internetMessageId": "<...>", "folder": "inbox",
                         "subject": "...", "id": "<optional item id>"}]}}}},
   "faults": [                             checked in order; each rule counts the
     {"api": "graph|ews|token|any",        calls it matches (1-based)
      "op": "graph.move", "mailbox": "dana@contoso.com",   optional filters
      "calls": [2] or "first": 3,          which of its calls it answers
      "status": 429, "retry_after": 1,     HTTP status, Retry-After header
      "ews_server_busy": 1500}]}           EWS: 500 ErrorServerBusy, BackOffMilliseconds

Each JSONL record: seq, time, peer_ip, peer_port, api (token|graph|ews|unknown),
op (token.client_secret, token.client_assertion, graph.list, graph.move,
graph.delete, graph.permanentDelete, ews.FindItem, ews.FindFolder, ews.MoveItem,
ews.DeleteItem), method, path, query, headers (Authorization redacted),
user_agent, client_request_id, tenant, client_id, token (the issued token's
number), mailbox, internet_message_id, results, status, outcome, error (why a
request was refused), warnings (documented SHOULDs the request missed), fault.

Only the Python standard library is used; RS256/PS256 signatures are checked
with plain integer arithmetic so the verifier shares nothing with the client.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

GRAPH_RESOURCE = "https://graph.microsoft.com"
EWS_RESOURCE = "https://outlook.office365.com"
CANONICAL_LOGIN = "https://login.microsoftonline.com"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

# mailFolder well-known names (Graph) / DistinguishedFolderId values (EWS) that
# hold mail. Graph treats them case-insensitively.
WELL_KNOWN = ["inbox", "junkemail", "deleteditems", "drafts", "sentitems", "outbox", "archive",
              "clutter", "conflicts", "conversationhistory", "localfailures", "serverfailures",
              "syncissues", "scheduled", "searchfolders", "msgfolderroot", "root",
              "recoverableitemsroot", "recoverableitemsdeletions", "recoverableitemspurges",
              "recoverableitemsversions"]
# Folders a mailbox-wide GET /messages does not list (the dumpster).
HIDDEN = {"recoverableitemsdeletions", "recoverableitemspurges", "recoverableitemsversions",
          "recoverableitemsroot"}
EWS_VERSIONS = {"Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1", "Exchange2010_SP2",
                "Exchange2013", "Exchange2013_SP1", "Exchange2015", "Exchange2016", "V2015_10_05",
                "V2016_01_06", "V2016_04_13", "V2016_07_13", "V2016_10_10", "V2017_01_07", "V2017_04_14",
                "V2017_07_11", "V2017_10_09", "V2018_01_08"}
GRAPH_MESSAGE_PROPS = {"id", "internetMessageId", "parentFolderId", "subject", "receivedDateTime",
                       "sentDateTime", "from", "sender", "toRecipients", "ccRecipients", "bccRecipients",
                       "isRead", "isDraft", "hasAttachments", "conversationId", "createdDateTime",
                       "lastModifiedDateTime", "changeKey", "categories", "importance", "bodyPreview",
                       "webLink", "body", "flag", "replyTo", "inferenceClassification",
                       "internetMessageHeaders", "uniqueBody", "isReadReceiptRequested",
                       "isDeliveryReceiptRequested", "parentFolderId"}
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Reject(Exception):
    """A request the stand-in refuses: status and a readable reason."""

    def __init__(self, status, message, code=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


# ----------------------------------------------------------------- crypto


def b64url_decode(text):
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url (RFC 7515 §2: no padding, alphabet A-Z a-z 0-9 - _)")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def der_read(data, at):
    """One DER TLV at `at`: (tag, value start, value end)."""
    tag = data[at]
    length = data[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[at:at + n], "big")
        at += n
    return tag, at, at + length


def der_children(data, start, end):
    out = []
    while start < end:
        tag, vs, ve = der_read(data, start)
        out.append((tag, vs, ve))
        start = ve
    return out


def rsa_public_key(cert_der):
    """(n, e) of an X.509 certificate's RSA key; ValueError otherwise."""
    _, cs, ce = der_read(cert_der, 0)
    tbs_tag, ts, te = der_children(cert_der, cs, ce)[0]
    fields = der_children(cert_der, ts, te)
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    _, ss, se = fields[5]  # serial, signature, issuer, validity, subject, spki
    alg, key = der_children(cert_der, ss, se)
    oid = der_children(cert_der, alg[1], alg[2])[0]
    if cert_der[oid[1]:oid[2]] != bytes.fromhex("2a864886f70d010101"):
        raise ValueError("the certificate's key is not RSA (Entra ID client assertions use RS256/PS256)")
    bits = cert_der[key[1] + 1:key[2]]  # skip the unused-bits byte
    _, rs, re_ = der_read(bits, 0)
    n_t, e_t = der_children(bits, rs, re_)
    return int.from_bytes(bits[n_t[1]:n_t[2]], "big"), int.from_bytes(bits[e_t[1]:e_t[2]], "big")


def pem_certificates(path):
    text = open(path, encoding="ascii").read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    return [base64.b64decode("".join(b.split())) for b in blocks]


def mgf1(seed, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def verify_rsa(alg, n, e, signing_input, signature):
    """RS256 (RSASSA-PKCS1-v1_5) or PS256 (RSASSA-PSS, MGF1-SHA256, salt 32,
    RFC 7518 §3.5) verification of `signature` over `signing_input`."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    m = pow(s, e, n)
    digest = hashlib.sha256(signing_input).digest()
    if alg == "RS256":
        info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
        expected = b"\x00\x01" + b"\xff" * (k - len(info) - 3) + b"\x00" + info
        return hmac.compare_digest(m.to_bytes(k, "big"), expected)
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    try:
        em = m.to_bytes(em_len, "big")
    except OverflowError:
        return False
    h_len, s_len = 32, 32
    if em_len < h_len + s_len + 2 or em[-1] != 0xBC:
        return False
    masked, h = em[:em_len - h_len - 1], em[em_len - h_len - 1:-1]
    zero_bits = 8 * em_len - em_bits
    if zero_bits and masked[0] >> (8 - zero_bits):
        return False
    db = bytearray(a ^ b for a, b in zip(masked, mgf1(h, len(masked))))
    if zero_bits:
        db[0] &= 0xFF >> zero_bits
    ps_len = em_len - h_len - s_len - 2
    if any(db[:ps_len]) or db[ps_len] != 0x01:
        return False
    salt = bytes(db[ps_len + 1:])
    return hmac.compare_digest(hashlib.sha256(b"\x00" * 8 + digest + salt).digest(), h)


# ----------------------------------------------------------------- state


class State:
    """Configuration plus everything the stand-in learned while serving;
    one lock guards it all (requests are handled on threads)."""

    def __init__(self, config):
        self.lock = threading.RLock()
        self.config = config
        self.tokens = {}
        self.token_seq = 0
        self.seq = 0
        self.jtis = set()
        self.fault_hits = {}
        self.mailbox_calls = {}
        self.token_key = os.urandom(32)
        self.mailboxes = {}
        self.load_mailboxes()

    def load_mailboxes(self):
        self.mailboxes = {}
        for tid, tenant in self.config.get("tenants", {}).items():
            for upn, box in tenant.get("mailboxes", {}).items():
                key = upn.lower()
                messages = []
                for i, m in enumerate(box.get("messages", [])):
                    messages.append({
                        "id": m.get("id") or item_id(key, m["internetMessageId"], i),
                        "internetMessageId": m["internetMessageId"],
                        "folder": m.get("folder", "inbox").lower(),
                        "subject": m.get("subject", ""),
                        "receivedDateTime": m.get("receivedDateTime", "2024-03-14T09:15:05Z"),
                        "history": [],
                    })
                self.mailboxes[key] = {
                    "upn": upn, "tenant": tid, "id": box.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                    "ews_enabled": box.get("ews_enabled", True), "folders": box.get("folders", []),
                    "messages": messages,
                }

    def tenant(self, name):
        """Tenant id for a GUID or a domain name, as the token endpoint accepts."""
        tenants = self.config.get("tenants", {})
        if name.lower() in (t.lower() for t in tenants):
            return next(t for t in tenants if t.lower() == name.lower())
        for tid, t in tenants.items():
            if name.lower() in (d.lower() for d in t.get("domains", [])):
                return tid
        return None

    def mailbox(self, ident):
        ident = ident.lower()
        if ident in self.mailboxes:
            return self.mailboxes[ident]
        for box in self.mailboxes.values():
            if box["id"].lower() == ident:
                return box
        return None

    def folder_id(self, box, name):
        return "AAMkAD" + b64url(hashlib.sha256(f"{box['upn']}/{name}".encode()).digest()[:24]) + "AAA="

    def resolve_folder(self, box, ident):
        """A folder key (well-known name or custom id) for a Graph or EWS
        folder reference, or None."""
        if ident.lower() in WELL_KNOWN:
            return ident.lower()
        for name in WELL_KNOWN:
            if self.folder_id(box, name) == ident:
                return name
        for f in box["folders"]:
            if f["id"] == ident:
                return f["id"]
        return None

    def folder_ref(self, box, key):
        return key if any(f["id"] == key for f in box["folders"]) else self.folder_id(box, key)

    def fault(self, api, op, mailbox):
        """The injected fault for this call, if any: every rule counts the
        calls it matches (1-based); the first rule that fires answers."""
        fired = None
        for i, rule in enumerate(self.config.get("faults", [])):
            if rule.get("api", "any") not in ("any", api):
                continue
            if rule.get("op") and rule["op"] != op:
                continue
            if rule.get("mailbox") and (mailbox or "").lower() != rule["mailbox"].lower():
                continue
            n = self.fault_hits.get(i, 0) + 1
            self.fault_hits[i] = n
            if fired is None and (n in rule.get("calls", []) or n <= rule.get("first", 0)):
                fired = rule
        return fired


def item_id(mailbox, imid, n):
    return "AAMkAG" + b64url(hashlib.sha256(f"{mailbox}|{imid}|{n}".encode()).digest()[:30]) + "AAA="


# ----------------------------------------------------------------- server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "m365-standin"
    sys_version = ""

    def setup(self):
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True
            self.rfile = self.wfile = None
            return
        super().setup()

    def finish(self):
        if self.wfile is not None:
            super().finish()

    def handle(self):
        if self.rfile is None:
            return
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            pass

    def log_message(self, fmt, *args):
        pass

    # -------------------------------------------------------------- plumbing

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else b""

    def dispatch(self):
        self.started = time.time()
        self.body = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        self.url_path, self.raw_query = url.path, url.query
        self.record = {
            "time": round(self.started, 6), "peer_ip": self.client_address[0], "peer_port": self.client_address[1],
            "method": self.command, "path": self.url_path, "query": self.raw_query,
            "user_agent": self.headers.get("User-Agent"),
            "client_request_id": self.headers.get("client-request-id"),
            "headers": self.logged_headers(), "warnings": [],
        }
        if self.url_path.startswith("/_standin/"):
            return self.admin()
        path = self.url_path
        try:
            if re.fullmatch(r"/[^/]+/oauth2/v2\.0/token", path):
                self.api = "token"
                return self.token()
            if path.startswith("/v1.0/") or path == "/v1.0":
                self.api = "graph"
                return self.graph()
            if path.lower() == "/ews/exchange.asmx":
                self.api = "ews"
                if path != "/EWS/Exchange.asmx":
                    self.warn(f"path spelled {path!r}; Microsoft documents /EWS/Exchange.asmx")
                return self.ews()
            self.api = "unknown"
            raise Reject(404, f"stand-in: no endpoint at {self.command} {path} (token: /{{tenant}}/oauth2/v2.0/token, "
                              "Graph: /v1.0/..., EWS: /EWS/Exchange.asmx)")
        except Reject as r:
            self.reject(r)
        except Exception as e:  # a stand-in bug must be readable too
            self.api = getattr(self, "api", "unknown")
            self.reject(Reject(500, f"stand-in internal error: {type(e).__name__}: {e}"))

    def logged_headers(self):
        out = {}
        for k, v in self.headers.items():
            if k.lower() == "authorization":
                scheme, _, cred = v.partition(" ")
                v = f"{scheme} [redacted, {len(cred)} chars]"
            out[k.lower()] = v
        return out

    def warn(self, text):
        self.record["warnings"].append(text)

    def send(self, status, body=b"", content_type=None, headers=None, outcome=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if self.headers.get("client-request-id"):
            self.send_header("client-request-id", self.headers["client-request-id"])
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.record["status"] = status
        if outcome is not None:
            self.record["outcome"] = outcome
        self.write_log()

    def write_log(self):
        state = self.server.state
        with state.lock:
            state.seq += 1
            self.record["seq"] = state.seq
            self.record.setdefault("api", getattr(self, "api", "unknown"))
            with open(self.server.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.record, ensure_ascii=False) + "\n")

    def reject(self, r):
        self.record["error"] = r.message
        self.record["api"] = getattr(self, "api", "unknown")
        if self.record["api"] == "token":
            body = json.dumps(aad_error(r.code or "invalid_request", r.message, r.status))
            return self.send(r.status, body, "application/json; charset=utf-8", r.headers, outcome="rejected")
        if self.record["api"] == "ews":
            if r.status in (401, 403) and r.code is None:
                return self.send(r.status, r.message, "text/plain; charset=utf-8", r.headers, outcome="rejected")
            return self.send(r.status, soap_fault(r.code or "ErrorSchemaValidation", r.message),
                             "text/xml; charset=utf-8", r.headers, outcome="rejected")
        body = json.dumps({"error": {"code": r.code or "BadRequest", "message": r.message,
                                     "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                    "request-id": str(uuid.uuid4())}}})
        return self.send(r.status, body, "application/json", r.headers, outcome="rejected")

    def require_user_agent(self):
        ua = self.headers.get("User-Agent")
        if not ua:
            # exogate's own requirement (every call carries the configured
            # User-Agent), enforced here so a missing one fails loudly.
            raise Reject(400, "stand-in: no User-Agent header; exogate sends its configured User-Agent on every call")
        expected = self.server.state.config.get("expect_user_agent")
        if expected and ua != expected:
            raise Reject(400, f"stand-in: User-Agent is {ua!r}, the test configured {expected!r}")
        cid = self.headers.get("client-request-id")
        if cid is not None and not GUID_RE.match(cid):
            self.warn("client-request-id is not a GUID (Graph documents it as a client-generated GUID)")

    # -------------------------------------------------------------- admin

    def admin(self):
        state = self.server.state
        self.api = "admin"
        if self.command == "GET" and self.url_path == "/_standin/state":
            with state.lock:
                body = {"mailboxes": state.mailboxes, "tokens_issued": state.token_seq,
                        "requests": state.seq, "fault_hits": {str(k): v for k, v in state.fault_hits.items()}}
            return self.admin_send(200, body)
        if self.command == "POST" and self.url_path == "/_standin/config":
            try:
                patch = json.loads(self.body or b"{}")
            except ValueError as e:
                return self.admin_send(400, {"error": f"config patch is not JSON: {e}"})
            with state.lock:
                state.config.update(patch)
                if "faults" in patch:
                    state.fault_hits = {}
                if "tenants" in patch:
                    state.load_mailboxes()
            return self.admin_send(200, {"ok": True})
        return self.admin_send(404, {"error": "admin endpoints: GET /_standin/state, POST /_standin/config"})

    def admin_send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # -------------------------------------------------------------- token endpoint

    def token(self):
        state = self.server.state
        tenant_path = self.url_path.split("/")[1]
        self.record["op"] = "token"
        if self.command != "POST":
            raise Reject(405, f"the token endpoint takes POST, not {self.command}")
        if tenant_path.lower() in ("common", "organizations", "consumers"):
            raise Reject(400, f"AADSTS90002: client credentials need a tenant-specific endpoint, not /{tenant_path}/",
                         "invalid_request")
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise Reject(400, f"Content-Type must be application/x-www-form-urlencoded, got {ctype!r}")
        try:
            form = urllib.parse.parse_qs(self.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as e:
            raise Reject(400, f"the body is not a form (application/x-www-form-urlencoded): {e}")
        dup = [k for k, v in form.items() if len(v) > 1]
        if dup:
            raise Reject(400, f"parameter(s) given more than once: {', '.join(dup)}")
        form = {k: v[0] for k, v in form.items()}
        self.record["form"] = redact_form(form)
        self.require_user_agent()
        tid = state.tenant(tenant_path)
        if tid is None:
            raise Reject(400, f"AADSTS90002: Tenant '{tenant_path}' not found.", "invalid_request")
        self.record["tenant"] = tid
        if form.get("grant_type") != "client_credentials":
            raise Reject(400, f"grant_type must be client_credentials, got {form.get('grant_type')!r}",
                         "unsupported_grant_type")
        scope = form.get("scope")
        resource = {f"{GRAPH_RESOURCE}/.default": GRAPH_RESOURCE, f"{EWS_RESOURCE}/.default": EWS_RESOURCE}.get(scope)
        if resource is None:
            raise Reject(400, f"AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
                              f"Expected {GRAPH_RESOURCE}/.default or {EWS_RESOURCE}/.default, got {scope!r}",
                         "invalid_scope")
        basic = self.headers.get("Authorization", "")
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        if basic.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                raise Reject(400, "the Basic Authorization header is not base64 of client_id:client_secret")
            client_id = client_id or urllib.parse.unquote_plus(user)
            secret = urllib.parse.unquote_plus(pw)
            if form.get("client_secret"):
                raise Reject(400, "client_secret given both in the body and in the Authorization header")
        if not client_id:
            raise Reject(400, "AADSTS900144: The request body must contain the following parameter: 'client_id'.")
        self.record["client_id"] = client_id
        apps = state.config["tenants"][tid].get("apps", {})
        app = apps.get(client_id)
        if app is None:
            raise Reject(400, f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                              f"directory '{tid}'.", "unauthorized_client")
        assertion = form.get("client_assertion")
        if secret is not None and assertion is not None:
            raise Reject(400, "give either client_secret or client_assertion, not both")
        with state.lock:
            fault = state.fault("token", "token", None)
        if fault:
            return self.inject(fault)
        if assertion is not None:
            self.record["op"] = "token.client_assertion"
            if form.get("client_assertion_type") != JWT_BEARER:
                raise Reject(400, f"client_assertion_type must be {JWT_BEARER}, got "
                                  f"{form.get('client_assertion_type')!r}")
            self.check_assertion(assertion, app, client_id, tenant_path)
        elif secret is not None:
            self.record["op"] = "token.client_secret"
            if app.get("secret") is None or not hmac.compare_digest(secret.encode(), app["secret"].encode()):
                raise Reject(401, f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                                  f"the request is the client secret value, not the client secret ID, for a secret "
                                  f"added to app '{client_id}'.", "invalid_client")
        else:
            raise Reject(400, "AADSTS7000218: The request body must contain the following parameter: "
                              "'client_assertion' or 'client_secret'.", "invalid_client")
        roles = app.get("graph_roles", []) if resource == GRAPH_RESOURCE else app.get("ews_roles", [])
        lifetime = int(state.config.get("token_lifetime", 3599))
        with state.lock:
            state.token_seq += 1
            n = state.token_seq
            now = int(time.time())
            claims = {"aud": resource, "iss": f"https://sts.windows.net/{tid}/", "iat": now, "nbf": now,
                      "exp": now + lifetime, "appid": client_id, "tid": tid, "roles": roles, "idtyp": "app",
                      "standin_token": n}
            head = b64url(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "standin"}).encode())
            payload = b64url(json.dumps(claims).encode())
            sig = b64url(hmac.new(state.token_key, f"{head}.{payload}".encode(), hashlib.sha256).digest())
            token = f"{head}.{payload}.{sig}"
            state.tokens[token] = claims
        self.record.update({"token": n, "resource": resource, "expires_in": lifetime})
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
        self.send(200, json.dumps(body), "application/json; charset=utf-8",
                  {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}, outcome=f"issued token {n}")

    def check_assertion(self, assertion, app, client_id, tenant_path):
        parts = assertion.split(".")
        if len(parts) != 3:
            raise Reject(400, f"AADSTS50027: client_assertion is not a JWS compact serialization "
                              f"(header.payload.signature): {len(parts)} part(s)", "invalid_request")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError as e:
            raise Reject(400, f"AADSTS50027: client_assertion does not decode: {e}", "invalid_request")
        self.record["assertion"] = {"header": header, "claims": claims}
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise Reject(400, "AADSTS50027: the assertion's header and payload must be JSON objects")
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise Reject(400, f"AADSTS5002723: assertion alg must be PS256 (current documentation) or RS256 "
                              f"(earlier documentation), got {alg!r}", "invalid_request")
        if header.get("typ") not in (None, "JWT"):
            raise Reject(400, f"assertion typ should be JWT, got {header.get('typ')!r}")
        if header.get("typ") is None:
            self.warn("assertion header has no typ (documented: typ JWT)")
        if "x5t" not in header and "x5t#S256" not in header:
            raise Reject(400, "AADSTS700027: the assertion header names no certificate: give x5t#S256 "
                              "(base64url SHA-256 of the certificate's DER) or x5t (base64url SHA-1)",
                         "invalid_client")
        cert = None
        for path in app.get("certificates", []):
            for der in pem_certificates(path):
                ok = True
                if "x5t#S256" in header:
                    ok &= header["x5t#S256"] == b64url(hashlib.sha256(der).digest())
                if "x5t" in header:
                    ok &= header["x5t"] == b64url(hashlib.sha1(der).digest())
                if ok:
                    cert = der
        if cert is None:
            raise Reject(401, f"AADSTS700027: The certificate with identifier used to sign the client assertion "
                              f"is not registered on application '{client_id}' (x5t/x5t#S256 match no registered "
                              f"certificate).", "invalid_client")
        for claim in ("aud", "iss", "sub", "exp"):
            if claim not in claims:
                raise Reject(400, f"AADSTS50027: the assertion has no {claim!r} claim", "invalid_request")
        if claims["iss"] != client_id or claims["sub"] != client_id:
            raise Reject(401, f"AADSTS700021: iss and sub must both be the client id {client_id!r}; got iss="
                              f"{claims['iss']!r} sub={claims['sub']!r}", "invalid_client")
        host = self.headers.get("Host", "")
        audiences = {f"https://{host}{self.url_path}", f"{CANONICAL_LOGIN}/{tenant_path}/oauth2/v2.0/token"}
        if claims["aud"] not in audiences:
            raise Reject(401, f"AADSTS700212: the assertion's aud {claims['aud']!r} is not this token endpoint; "
                              f"expected one of {sorted(audiences)}", "invalid_client")
        now = time.time()
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
            raise Reject(401, f"AADSTS700024: Client assertion is not within its valid time range (exp "
                              f"{claims['exp']!r}, now {int(now)})", "invalid_client")
        nbf = claims.get("nbf")
        if nbf is None:
            self.warn("assertion has no nbf claim (documented)")
        elif not isinstance(nbf, (int, float)) or nbf > now + 300:
            raise Reject(401, f"AADSTS700024: Client assertion is not within its valid time range (nbf {nbf!r} is "
                              f"in the future)", "invalid_client")
        elif claims["exp"] - nbf > 600:
            self.warn("assertion lives longer than 10 minutes (documented: 5-10 minutes after nbf at most)")
        jti = claims.get("jti")
        if not jti:
            self.warn("assertion has no jti claim (documented: a GUID)")
        else:
            with self.server.state.lock:
                if jti in self.server.state.jtis:
                    self.warn("assertion jti reused: make a fresh assertion for every token request")
                self.server.state.jtis.add(jti)
        n, e = rsa_public_key(cert)
        if not verify_rsa(alg, n, e, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
            raise Reject(401, f"AADSTS7000274: the client assertion's {alg} signature does not verify with the "
                              f"registered certificate", "invalid_client")

    # -------------------------------------------------------------- resources: shared

    def bearer(self, resource, api):
        """The token's claims, checked for this resource; 401 otherwise."""
        auth = self.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": f'Bearer realm="", authorization_uri="{CANONICAL_LOGIN}/common/oauth2/'
                                         f'authorize", error="invalid_token"'}
        if not auth.startswith("Bearer "):
            raise Reject(401, "Authorization: Bearer <token> is missing" if not auth else
                         f"Authorization scheme must be Bearer, got {auth.split(' ')[0]!r}",
                         "InvalidAuthenticationToken" if api == "graph" else None, challenge)
        token = auth[7:].strip()
        with self.server.state.lock:
            claims = self.server.state.tokens.get(token)
        if claims is None:
            raise Reject(401, "Access token validation failure: the token was not issued by this stand-in",
                         "InvalidAuthenticationToken" if api == "graph" else None, challenge)
        self.record["token"] = claims["standin_token"]
        self.record["tenant"] = claims["tid"]
        self.record["client_id"] = claims["appid"]
        if claims["exp"] <= time.time():
            raise Reject(401, "Lifetime validation failed, the token is expired.",
                         "InvalidAuthenticationToken" if api == "graph" else None, challenge)
        if claims["aud"] != resource:
            raise Reject(401, f"Access token validation failure. Invalid audience: the token is for "
                              f"{claims['aud']}, this is {resource} (request the scope {resource}/.default)",
                         "InvalidAuthenticationToken" if api == "graph" else None, challenge)
        return claims

    def mailbox_for(self, claims, ident):
        state = self.server.state
        with state.lock:
            box = state.mailbox(ident)
        if box is None or box["tenant"] != claims["tid"]:
            return None
        app = state.config["tenants"][claims["tid"]]["apps"].get(claims["appid"], {})
        scope = app.get("mailboxes")
        if scope is not None and box["upn"].lower() not in (m.lower() for m in scope):
            # Graph's answer is documented (auth-limit-mailbox-access); EWS's is not.
            raise Reject(403, "Access to OData is disabled.", "ErrorAccessDenied") if self.api == "graph" else \
                Reject(500, "Access is denied. Check credentials and try again.", "ErrorAccessDenied")
        return box

    def inject(self, fault):
        """Answer with the injected fault instead of serving the call."""
        self.record["fault"] = fault
        status = fault.get("status", 500)
        headers = {}
        if "retry_after" in fault:
            headers["Retry-After"] = fault["retry_after"]
        if self.api == "token":
            body = aad_error("temporarily_unavailable", f"AADSTS50196: injected fault (HTTP {status})", status)
            return self.send(status, json.dumps(body), "application/json; charset=utf-8", headers, outcome="fault")
        if self.api == "ews":
            if "ews_server_busy" in fault:
                return self.send(500, soap_fault("ErrorServerBusy",
                                                 "The server cannot service this request right now. Try again later.",
                                                 back_off=fault["ews_server_busy"]),
                                 "text/xml; charset=utf-8", headers, outcome="fault")
            if status == 500:
                return self.send(500, soap_fault("ErrorInternalServerError",
                                                 "An internal server error occurred. The operation failed."),
                                 "text/xml; charset=utf-8", headers, outcome="fault")
            return self.send(status, b"", None, headers, outcome="fault")
        code, message = {
            429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
            503: ("ServiceUnavailable", "The service is temporarily unavailable. Try again later."),
            500: ("ErrorInternalServerError", "An internal server error occurred. The operation failed."),
        }.get(status, ("generalException", f"injected fault (HTTP {status})"))
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}}}
        return self.send(status, json.dumps(body), "application/json", headers, outcome="fault")

    def fault_for(self, op, box):
        with self.server.state.lock:
            self.server.state.mailbox_calls[box["upn"]] = self.server.state.mailbox_calls.get(box["upn"], 0) + 1
            return self.server.state.fault(self.api, op, box["upn"])

    # -------------------------------------------------------------- Graph

    def graph(self):
        state = self.server.state
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/messages(?:/([^/]+)(?:/(move|permanentDelete))?)?", self.url_path)
        if not m:
            raise Reject(400, f"stand-in: Graph path not modelled: {self.url_path} (modelled: "
                              "/v1.0/users/{id|upn}/messages[/{id}[/move|/permanentDelete]])", "BadRequest")
        user, msg_id, action = (urllib.parse.unquote(g) if g else g for g in m.groups())
        op = {(False, None, "GET"): "graph.list", (True, "move", "POST"): "graph.move",
              (True, None, "DELETE"): "graph.delete",
              (True, "permanentDelete", "POST"): "graph.permanentDelete"}.get((msg_id is not None, action, self.command))
        if op is None:
            raise Reject(405, f"{self.command} is not allowed on {self.url_path} (stand-in models GET "
                              f".../messages, POST .../{{id}}/move, DELETE .../{{id}}, POST .../{{id}}/permanentDelete)",
                         "Request_BadRequest")
        self.record.update({"op": op, "mailbox": user})
        self.require_user_agent()
        claims = self.bearer(GRAPH_RESOURCE, "graph")
        if op != "graph.list" and self.raw_query:
            raise Reject(400, f"{op} takes no query string, got {self.raw_query!r}")
        if op == "graph.list":
            query = self.graph_query()
        elif op == "graph.move":
            dest = self.graph_move_body()
        elif self.body:
            raise Reject(400, f"{op}: don't supply a request body for this method (got {len(self.body)} bytes)")
        box = self.mailbox_for(claims, user)
        if box is None:
            raise Reject(404, f"The requested user '{user}' is invalid.", "ErrorInvalidUser")
        self.record["mailbox"] = box["upn"]
        roles = set(claims["roles"])
        needed = {"Mail.ReadWrite"} if op != "graph.list" else {"Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic",
                                                                 "Mail.ReadBasic.All"}
        if not roles & needed:
            raise Reject(403, "Access is denied. Check credentials and try again.", "ErrorAccessDenied")
        fault = self.fault_for(op, box)
        if fault:
            return self.inject(fault)
        with state.lock:
            if op == "graph.list":
                return self.graph_list(box, *query)
            msg = next((x for x in box["messages"] if x["id"] == msg_id and x["folder"] not in
                        ("recoverableitemspurges",)), None)
            if msg is None or msg["folder"] in HIDDEN:
                raise Reject(404, "The specified object was not found in the store.", "ErrorItemNotFound")
            self.record["internet_message_id"] = msg["internetMessageId"]
            if op == "graph.move":
                folder = state.resolve_folder(box, dest)
                if folder is None:
                    raise Reject(404, f"The specified object was not found in the store. (destinationId {dest!r} "
                                      "is neither a well-known folder name nor a folder id of this mailbox)",
                                 "ErrorItemNotFound")
                self.move(box, msg, folder, "graph.move")
                return self.send(201, json.dumps(graph_message(state, box, msg, None, full=True)), "application/json",
                                 outcome=f"moved to {folder}")
            if op == "graph.delete":
                self.move(box, msg, "recoverableitemsdeletions", "graph.delete", keep_id=True)
                return self.send(204, outcome="deleted")
            self.move(box, msg, "recoverableitemspurges", "graph.permanentDelete", keep_id=True)
            return self.send(204, outcome="permanently deleted")

    def move(self, box, msg, folder, how, keep_id=False):
        old = msg["id"]
        msg["history"].append({"op": how, "from": msg["folder"], "to": folder, "old_id": old})
        msg["folder"] = folder
        if not keep_id:  # a move makes a new copy with a new id and removes the original
            msg["id"] = item_id(box["upn"], msg["internetMessageId"], len(msg["history"]) + 1000)
        self.record.setdefault("results", []).append({"id": old, "new_id": msg["id"], "folder": folder})

    def graph_query(self):
        params = {}
        for pair in self.raw_query.split("&") if self.raw_query else []:
            key, eq, value = pair.partition("=")
            key, value = urllib.parse.unquote_plus(key), urllib.parse.unquote_plus(value)
            if not eq:
                raise Reject(400, f"query option {key!r} has no value")
            if key in params:
                raise Reject(400, f"Query option '{key}' was specified more than once, but it must be specified "
                                  "at most once.")
            params[key] = value
        for key in params:
            if key not in ("$filter", "$select", "$top", "$skip"):
                raise Reject(400, f"Query option '{key}' is not allowed (stand-in models $filter, $select, $top, "
                                  "$skip; use the $ prefix on v1.0)")
        select = None
        if "$select" in params:
            select = [s.strip() for s in params["$select"].split(",")]
            for s in select:
                if s not in GRAPH_MESSAGE_PROPS:
                    raise Reject(400, f"Could not find a property named '{s}' on type 'microsoft.graph.message'.",
                                 "RequestBroker--ParseUri")
        else:
            self.warn("no $select (Graph recommends selecting the properties you need)")
        imid = None
        if "$filter" in params:
            f = params["$filter"]
            m = re.fullmatch(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*", f)
            if not m:
                raise Reject(400, f"Invalid filter clause: stand-in models only internetMessageId eq '<...>' "
                                  f"(single quotes doubled inside); got {f!r}", "BadRequest")
            if m.group(1) != "internetMessageId":
                if m.group(1).lower() == "internetmessageid":
                    self.warn(f"property spelled {m.group(1)!r}; Graph documents internetMessageId")
                else:
                    raise Reject(400, f"stand-in models $filter only on internetMessageId, got {m.group(1)!r}")
            imid = m.group(2).replace("''", "'")
            self.record["internet_message_id"] = imid
            if not (imid.startswith("<") and imid.endswith(">")):
                self.warn("filter value has no angle brackets; Exchange stores internetMessageId as <...>")
        top, skip = params.get("$top", "10"), params.get("$skip", "0")
        if not top.isdigit() or not 1 <= int(top) <= 1000 or not skip.isdigit():
            raise Reject(400, f"$top must be 1..1000 and $skip a non-negative integer, got {top!r} and {skip!r}")
        top, skip = int(top), int(skip)
        return imid, select, top, skip

    def graph_list(self, box, imid, select, top, skip):
        state = self.server.state
        found = [x for x in box["messages"] if x["folder"] not in HIDDEN
                 and (imid is None or x["internetMessageId"] == imid)]
        page = found[skip:skip + top]
        sel = f"({','.join(select)})" if select else ""
        body = {"@odata.context": f"{GRAPH_RESOURCE}/v1.0/$metadata#users('{box['upn']}')/messages{sel}",
                "value": [graph_message(state, box, x, select) for x in page]}
        if skip + top < len(found):
            q = urllib.parse.parse_qsl(self.raw_query)
            q = [(k, v) for k, v in q if k != "$skip"] + [("$skip", str(skip + top))]
            body["@odata.nextLink"] = (f"https://{self.headers.get('Host')}{self.url_path}?"
                                       + urllib.parse.urlencode(q, quote_via=urllib.parse.quote))
        self.record["results"] = [{"id": x["id"], "folder": x["folder"]} for x in page]
        return self.send(200, json.dumps(body), "application/json; odata.metadata=minimal",
                         outcome=f"found {len(page)}")

    def graph_move_body(self):
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise Reject(415, f"Content-Type must be application/json, got {ctype!r}", "UnsupportedMediaType")
        try:
            body = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Reject(400, f"the move body is not JSON: {e}")
        self.record["body"] = body
        if not isinstance(body, dict) or set(body) != {"destinationId"} or not isinstance(body["destinationId"], str):
            raise Reject(400, f"the move body must be {{\"destinationId\": \"<folder id or well-known name>\"}}, "
                              f"got {body!r}")
        self.record["destination"] = body["destinationId"]
        return body["destinationId"]

    # -------------------------------------------------------------- EWS

    def ews(self):
        state = self.server.state
        self.record["op"] = "ews"
        if self.command != "POST":
            raise Reject(405, f"EWS takes POST, not {self.command}", "ErrorInvalidRequest")
        ctype = self.headers.get("Content-Type", "")
        mime, _, params = ctype.partition(";")
        if mime.strip().lower() != "text/xml":
            raise Reject(415, f"SOAP 1.1 requests are Content-Type: text/xml; charset=utf-8, got {ctype!r}",
                         "ErrorInvalidRequest")
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", params)
        if charset and charset.group(1).lower() != "utf-8":
            raise Reject(400, f"charset must be utf-8, got {charset.group(1)!r}")
        if b"<!DOCTYPE" in self.body:
            raise Reject(400, "a DOCTYPE is not allowed in a SOAP request")
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError as e:
            raise Reject(400, f"the body is not well-formed XML: {e}")
        if "https://schemas.microsoft.com/exchange" in self.body.decode("utf-8", "replace"):
            raise Reject(400, "EWS namespaces are http://schemas.microsoft.com/exchange/services/2006/types and "
                              ".../messages (http, not https: some Microsoft Learn samples print https by mistake)")
        if root.tag != f"{{{SOAP_NS}}}Envelope":
            raise Reject(400, f"the root element must be soap:Envelope ({SOAP_NS}), got {root.tag}")
        header = root.find(f"{{{SOAP_NS}}}Header")
        body = root.find(f"{{{SOAP_NS}}}Body")
        if body is None or len(body) != 1:
            raise Reject(400, "soap:Body must hold exactly one operation element")
        operation = body[0]
        name = operation.tag.split("}")[-1]
        if operation.tag != f"{{{M_NS}}}{name}":
            raise Reject(400, f"the operation element {operation.tag} must be in the messages namespace {M_NS}")
        self.record["op"] = f"ews.{name}"
        if name not in ("FindItem", "FindFolder", "MoveItem", "DeleteItem"):
            raise Reject(400, f"stand-in: EWS operation {name} is not modelled (FindItem, FindFolder, MoveItem, "
                              "DeleteItem)")
        action = self.headers.get("SOAPAction")
        if action is not None and action.strip('"') != f"{M_NS}/{name}":
            raise Reject(400, f"SOAPAction {action!r} does not name the operation in the body ({M_NS}/{name})")
        self.require_user_agent()
        if header is None:
            raise Reject(400, "soap:Header is missing (it carries RequestServerVersion and ExchangeImpersonation)")
        version = header.find(f"{{{T_NS}}}RequestServerVersion")
        if version is None or version.get("Version") not in EWS_VERSIONS:
            raise Reject(400, "t:RequestServerVersion with a Version attribute is required (Exchange 2010 and "
                              f"later); got {None if version is None else version.get('Version')!r}")
        self.record["server_version"] = version.get("Version")
        target = impersonated(header)
        self.record["mailbox"] = target
        claims = self.bearer(EWS_RESOURCE, "ews")
        if target is None:
            raise Reject(400, "ExchangeImpersonation SOAP header must be present for this type of OAuth token "
                              "(t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress)",
                         "ErrorInvalidExchangeImpersonationHeaderData")
        anchor = self.headers.get("X-AnchorMailbox")
        if anchor is None:
            raise Reject(400, "X-AnchorMailbox header is missing: with impersonation it must be the SMTP address "
                              "of the impersonated mailbox (documented)")
        if anchor.lower() != target.lower():
            raise Reject(400, f"X-AnchorMailbox {anchor!r} is not the impersonated mailbox {target!r}")
        tenant = state.config["tenants"][claims["tid"]]
        ews_cfg = tenant.get("ews", {})
        if not ews_cfg.get("enabled", True):
            return self.ews_disabled(ews_cfg)
        if not set(claims["roles"]) & {"full_access_as_app", "EWS.AccessAsApp"}:
            raise Reject(401, "The token does not carry full_access_as_app: grant the application permission "
                              "and admin consent", None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        box = self.mailbox_for(claims, target)
        if box is None:
            raise Reject(500, f"The SMTP address has no mailbox associated with it. ({target})",
                         "ErrorNonExistentMailbox")
        if not box["ews_enabled"]:
            return self.ews_disabled(ews_cfg)
        parsed = getattr(self, f"ews_parse_{name}")(operation, box)
        fault = self.fault_for(f"ews.{name}", box)
        if fault:
            return self.inject(fault)
        with state.lock:
            messages = getattr(self, f"ews_do_{name}")(box, parsed)
        self.send(200, soap_response(name, messages), "text/xml; charset=utf-8", outcome=self.record.get("outcome"))

    def ews_disabled(self, cfg):
        # Microsoft does not document the answer when EWS is turned off for a
        # tenant or mailbox (EwsEnabled $false / EWSAllowedAppIDs); 403 with no
        # SOAP body by default, 401 if the test asks for it.
        status = cfg.get("disabled_status", 403)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
        return self.send(status, b"", None, headers, outcome="ews disabled")

    def ews_parse_FindItem(self, op, box):
        traversal = op.get("Traversal")
        if traversal not in ("Shallow", "SoftDeleted", "Associated"):
            raise Reject(400, f"FindItem Traversal must be Shallow, SoftDeleted or Associated, got {traversal!r}")
        shape = op.find(f"{{{M_NS}}}ItemShape")
        base = None if shape is None else shape.find(f"{{{T_NS}}}BaseShape")
        if base is None or base.text not in ("IdOnly", "Default", "AllProperties"):
            raise Reject(400, "m:ItemShape/t:BaseShape (IdOnly, Default or AllProperties) is required")
        props = [] if shape.find(f"{{{T_NS}}}AdditionalProperties") is None else \
            [property_path(p) for p in shape.find(f"{{{T_NS}}}AdditionalProperties")]
        if base.text != "IdOnly":
            props += ["item:ParentFolderId", "item:Subject", "message:InternetMessageId"]
        view = op.find(f"{{{M_NS}}}IndexedPageItemView")
        offset, limit = 0, 1000
        if view is None:
            self.warn("FindItem without m:IndexedPageItemView (EWS throttling guidance: always page)")
        else:
            try:
                offset = int(view.get("Offset"))
                limit = int(view.get("MaxEntriesReturned", "1000"))
            except (TypeError, ValueError):
                raise Reject(400, "IndexedPageItemView needs integer Offset (required) and MaxEntriesReturned")
            if view.get("BasePoint") not in ("Beginning", "End") or offset < 0 or not 1 <= limit <= 1000:
                raise Reject(400, "IndexedPageItemView: BasePoint Beginning|End, Offset >= 0, "
                                  "MaxEntriesReturned 1..1000")
        imid = None
        restriction = op.find(f"{{{M_NS}}}Restriction")
        if restriction is not None:
            imid = internet_message_id_restriction(restriction)
            self.record["internet_message_id"] = imid
        folders = self.ews_folders(op.find(f"{{{M_NS}}}ParentFolderIds"), box, "ParentFolderIds")
        self.record["folders"] = folders
        return {"traversal": traversal, "props": props, "offset": offset, "limit": limit, "imid": imid,
                "folders": folders}

    def ews_do_FindItem(self, box, p):
        scope = set()
        for f in p["folders"]:
            scope |= {x for x in WELL_KNOWN if x not in HIDDEN} if f == "allitems" else {f}
        found = []
        if p["traversal"] == "Shallow":
            found = [m for m in box["messages"] if m["folder"] in scope
                     and (p["imid"] is None or m["internetMessageId"] == p["imid"])]
        elif p["traversal"] == "SoftDeleted" and p["imid"] is None:
            found = [m for m in box["messages"] if m["folder"] == "recoverableitemsdeletions"]
        page = found[p["offset"]:p["offset"] + p["limit"]]
        self.record["results"] = [{"id": m["id"], "folder": m["folder"]} for m in page]
        self.record["outcome"] = f"found {len(page)}"
        items = "".join(ews_item(self.server.state, box, m, p["props"]) for m in page)
        last = "true" if p["offset"] + len(page) >= len(found) else "false"
        return [("Success", "NoError",
                 f'<m:RootFolder IndexedPagingOffset="{p["offset"] + len(page)}" TotalItemsInView="{len(found)}" '
                 f'IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>')]

    def ews_parse_FindFolder(self, op, box):
        if op.get("Traversal") not in ("Shallow", "Deep"):
            raise Reject(400, "FindFolder Traversal must be Shallow or Deep")
        restriction = op.find(f"{{{M_NS}}}Restriction")
        wanted = None
        if restriction is not None:
            eq = restriction.find(f"{{{T_NS}}}IsEqualTo")
            path = None if eq is None or len(eq) != 2 else property_path(eq[0])
            const = None if eq is None else eq.find(f"{{{T_NS}}}FieldURIOrConstant/{{{T_NS}}}Constant")
            if path != "folder:DisplayName" or const is None:
                raise Reject(400, "stand-in models FindFolder only with IsEqualTo folder:DisplayName")
            wanted = const.get("Value")
        folders = self.ews_folders(op.find(f"{{{M_NS}}}ParentFolderIds"), box, "ParentFolderIds")
        return {"folders": folders, "name": wanted, "deep": op.get("Traversal") == "Deep"}

    def ews_do_FindFolder(self, box, p):
        # The hidden AllItems search folder under the root: the usual way to
        # search every folder of a mailbox with EWS.
        state = self.server.state
        hits = []
        if "root" in p["folders"] and p["name"] in (None, "AllItems"):
            hits.append(f'<t:SearchFolder><t:FolderId Id="{state.folder_id(box, "allitems")}" ChangeKey="AQAAAA=="/>'
                        f"<t:DisplayName>AllItems</t:DisplayName></t:SearchFolder>")
        for f in box["folders"]:
            if p["name"] in (None, f.get("displayName")) and ("msgfolderroot" in p["folders"] or p["deep"]):
                hits.append(f'<t:Folder><t:FolderId Id="{f["id"]}" ChangeKey="AQAAAA=="/>'
                            f'<t:DisplayName>{xml_escape(f.get("displayName", ""))}</t:DisplayName></t:Folder>')
        self.record["outcome"] = f"found {len(hits)} folder(s)"
        return [("Success", "NoError", f'<m:RootFolder TotalItemsInView="{len(hits)}" IncludesLastItemInRange="true">'
                                       f"<t:Folders>{''.join(hits)}</t:Folders></m:RootFolder>")]

    def ews_folders(self, node, box, what):
        state = self.server.state
        if node is None or len(node) == 0:
            raise Reject(400, f"m:{what} with at least one t:DistinguishedFolderId or t:FolderId is required")
        out = []
        for f in node:
            tag = f.tag.split("}")[-1]
            ident = f.get("Id")
            if f.tag == f"{{{T_NS}}}DistinguishedFolderId":
                if ident not in WELL_KNOWN:
                    raise Reject(400, f"DistinguishedFolderId Id {ident!r} is not a documented value")
                out.append(ident)
            elif f.tag == f"{{{T_NS}}}FolderId":
                if ident == state.folder_id(box, "allitems"):
                    out.append("allitems")
                else:
                    key = state.resolve_folder(box, ident or "")
                    if key is None:
                        raise Reject(500, "The specified folder could not be found in the store.",
                                     "ErrorFolderNotFound")
                    out.append(key)
            else:
                raise Reject(400, f"{what} may hold t:DistinguishedFolderId or t:FolderId, not {tag}")
        return out

    def ews_item_ids(self, op):
        ids = op.find(f"{{{M_NS}}}ItemIds")
        if ids is None or len(ids) == 0:
            raise Reject(400, "m:ItemIds with at least one t:ItemId is required")
        out = []
        for i in ids:
            if i.tag != f"{{{T_NS}}}ItemId" or not i.get("Id"):
                raise Reject(400, f"m:ItemIds may hold only t:ItemId elements with an Id attribute, got {i.tag}")
            out.append(i.get("Id"))
        self.record["message_ids"] = out
        return out

    def ews_parse_MoveItem(self, op, box):
        to = op.find(f"{{{M_NS}}}ToFolderId")
        if to is None or len(to) != 1:
            raise Reject(400, "m:ToFolderId with one t:DistinguishedFolderId or t:FolderId is required")
        folder = self.ews_folders(to, box, "ToFolderId")[0]
        self.record["destination"] = folder
        return {"folder": folder, "ids": self.ews_item_ids(op)}

    def ews_do_MoveItem(self, box, p):
        out = []
        for ident in p["ids"]:
            m = self.find_item(box, ident)
            if m is None:
                out.append(("Error", "ErrorItemNotFound", "", "The specified object was not found in the store."))
                continue
            self.move(box, m, p["folder"], "ews.MoveItem")
            out.append(("Success", "NoError", f'<m:Items><t:Message><t:ItemId Id="{m["id"]}" '
                                              f'ChangeKey="CQAAABYAAAA="/></t:Message></m:Items>'))
        self.record["outcome"] = ", ".join(r[1] for r in out)
        return out

    def ews_parse_DeleteItem(self, op, box):
        kind = op.get("DeleteType")
        if kind not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
            raise Reject(400, f"DeleteItem DeleteType must be HardDelete, SoftDelete or MoveToDeletedItems, got "
                              f"{kind!r} (the attribute is required)")
        self.record["delete_type"] = kind
        return {"kind": kind, "ids": self.ews_item_ids(op)}

    def ews_do_DeleteItem(self, box, p):
        folder = {"HardDelete": "recoverableitemspurges", "SoftDelete": "recoverableitemsdeletions",
                  "MoveToDeletedItems": "deleteditems"}[p["kind"]]
        out = []
        for ident in p["ids"]:
            m = self.find_item(box, ident)
            if m is None:
                out.append(("Error", "ErrorItemNotFound", "", "The specified object was not found in the store."))
                continue
            self.move(box, m, folder, f"ews.DeleteItem.{p['kind']}", keep_id=p["kind"] != "MoveToDeletedItems")
            out.append(("Success", "NoError", ""))
        self.record["outcome"] = ", ".join(r[1] for r in out)
        return out

    def find_item(self, box, ident):
        return next((m for m in box["messages"] if m["id"] == ident and m["folder"] != "recoverableitemspurges"),
                    None)


# ----------------------------------------------------------------- response shapes


def aad_error(code, description, status):
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)[:1]]
    return {"error": code, "error_description": f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\n"
                                                f"Timestamp: {stamp}",
            "error_codes": codes, "timestamp": stamp, "trace_id": trace, "correlation_id": corr}


def redact_form(form):
    out = dict(form)
    if "client_secret" in out:
        out["client_secret"] = f"[redacted, {len(form['client_secret'])} chars]"
    if "client_assertion" in out:
        out["client_assertion"] = f"[JWT, {len(form['client_assertion'])} chars; decoded under 'assertion']"
    return out


def graph_message(state, box, m, select, full=False):
    every = {
        "id": m["id"], "internetMessageId": m["internetMessageId"],
        "parentFolderId": state.folder_ref(box, m["folder"]), "subject": m["subject"],
        "receivedDateTime": m["receivedDateTime"], "isRead": False, "isDraft": False, "hasAttachments": False,
        "changeKey": "CQAAABYAAAA=",
    }
    out = {"@odata.etag": 'W/"CQAAABYAAAA="'}
    if full:
        out["@odata.context"] = f"{GRAPH_RESOURCE}/v1.0/$metadata#users('{box['upn']}')/messages/$entity"
        out.update(every)
        return out
    keys = ["id"] + [k for k in (select or ["subject", "receivedDateTime", "isRead", "internetMessageId",
                                            "parentFolderId"]) if k != "id"]
    for k in keys:
        if k in every:
            out[k] = every[k]
    return out


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def ews_item(state, box, m, props):
    inner = f'<t:ItemId Id="{m["id"]}" ChangeKey="CQAAABYAAAA="/>'
    if "item:ParentFolderId" in props:
        inner += f'<t:ParentFolderId Id="{state.folder_ref(box, m["folder"])}" ChangeKey="AQAAAA=="/>'
    if "item:Subject" in props:
        inner += f"<t:Subject>{xml_escape(m['subject'])}</t:Subject>"
    if "message:InternetMessageId" in props:
        inner += f"<t:InternetMessageId>{xml_escape(m['internetMessageId'])}</t:InternetMessageId>"
    if "0x1035" in props:
        inner += (f'<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x1035" PropertyType="String"/>'
                  f"<t:Value>{xml_escape(m['internetMessageId'])}</t:Value></t:ExtendedProperty>")
    return f"<t:Message>{inner}</t:Message>"


def property_path(el):
    """The property an EWS path element names: 'message:InternetMessageId',
    '0x1035' for the extended property, ...; 400 for other forms."""
    tag = el.tag.split("}")[-1]
    if el.tag == f"{{{T_NS}}}FieldURI":
        return el.get("FieldURI")
    if el.tag == f"{{{T_NS}}}ExtendedFieldURI":
        ptag, ptype = el.get("PropertyTag", ""), el.get("PropertyType")
        if ptype != "String":
            raise Reject(400, f"ExtendedFieldURI PropertyTag {ptag!r} needs PropertyType=\"String\", got {ptype!r}")
        value = int(ptag, 16) if ptag.lower().startswith("0x") else int(ptag) if ptag.isdigit() else None
        if value != 0x1035:
            raise Reject(400, f"stand-in models the extended property PR_INTERNET_MESSAGE_ID (0x1035) only, "
                              f"got {ptag!r}")
        return "0x1035"
    raise Reject(400, f"expected t:FieldURI or t:ExtendedFieldURI, got {tag}")


def internet_message_id_restriction(restriction):
    if len(restriction) != 1 or restriction[0].tag != f"{{{T_NS}}}IsEqualTo":
        raise Reject(400, "stand-in models FindItem restrictions of the form t:IsEqualTo on "
                          "message:InternetMessageId or PR_INTERNET_MESSAGE_ID (0x1035)")
    eq = restriction[0]
    if len(eq) != 2:
        raise Reject(400, "t:IsEqualTo holds a property path and t:FieldURIOrConstant")
    path = property_path(eq[0])
    if path not in ("message:InternetMessageId", "0x1035"):
        raise Reject(400, f"stand-in models the restriction on message:InternetMessageId or 0x1035, got {path!r}")
    const = eq.find(f"{{{T_NS}}}FieldURIOrConstant/{{{T_NS}}}Constant")
    if const is None or const.get("Value") is None:
        raise Reject(400, "t:FieldURIOrConstant/t:Constant Value=\"<message id>\" is required")
    return const.get("Value")


def impersonated(header):
    imp = header.find(f"{{{T_NS}}}ExchangeImpersonation")
    if imp is None:
        return None
    sid = imp.find(f"{{{T_NS}}}ConnectingSID")
    if sid is None or len(sid) != 1:
        raise Reject(400, "t:ExchangeImpersonation must hold one t:ConnectingSID with exactly one of "
                          "t:PrimarySmtpAddress, t:SmtpAddress, t:PrincipalName, t:SID",
                     "ErrorInvalidExchangeImpersonationHeaderData")
    kind = sid[0].tag.split("}")[-1]
    if sid[0].tag != f"{{{T_NS}}}{kind}" or kind not in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName", "SID"):
        raise Reject(400, f"ConnectingSID holds {sid[0].tag}; expected t:PrimarySmtpAddress, t:SmtpAddress, "
                          "t:PrincipalName or t:SID", "ErrorInvalidExchangeImpersonationHeaderData")
    if kind == "SID":
        raise Reject(400, "stand-in: impersonation by SID is not modelled; use t:PrimarySmtpAddress")
    return (sid[0].text or "").strip()


def server_version_header():
    return ('<soap:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="7386" '
            'MinorBuildNumber="17" Version="V2018_01_08" xmlns:h="' + T_NS + '" '
            'xmlns="' + T_NS + '" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></soap:Header>')


def soap_response(name, messages):
    parts = []
    for entry in messages:
        cls, code, inner = entry[0], entry[1], entry[2]
        text = f"<m:MessageText>{xml_escape(entry[3])}</m:MessageText>" if len(entry) > 3 else ""
        tail = "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>" if cls == "Error" else ""
        parts.append(f'<m:{name}ResponseMessage ResponseClass="{cls}">{text}<m:ResponseCode>{code}</m:ResponseCode>'
                     f"{tail}{inner}</m:{name}ResponseMessage>")
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_NS}">{server_version_header()}<soap:Body>'
            f'<m:{name}Response xmlns:m="{M_NS}" xmlns:t="{T_NS}"><m:ResponseMessages>{"".join(parts)}'
            f"</m:ResponseMessages></m:{name}Response></soap:Body></soap:Envelope>")


def soap_fault(code, message, back_off=None):
    extra = ""
    if back_off is not None:
        extra = (f'<t:MessageXml xmlns:t="{T_NS}"><t:Value Name="BackOffMilliseconds">{int(back_off)}</t:Value>'
                 "</t:MessageXml>")
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T_NS}">a:{code}</faultcode>'
            f'<faultstring xml:lang="en-US">{xml_escape(message)}</faultstring><detail>'
            f'<e:ResponseCode xmlns:e="{E_NS}">{code}</e:ResponseCode>'
            f'<e:Message xmlns:e="{E_NS}">{xml_escape(message)}</e:Message>{extra}'
            "</detail></s:Fault></s:Body></s:Envelope>")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state, context, log_path):
        self.state = state
        self.context = context
        self.log_path = log_path
        super().__init__(addr, Handler)

    def get_request(self):
        conn, addr = self.socket.accept()
        # The TLS handshake happens on the handler's thread (Handler.setup),
        # so a stalled client cannot hold up the accept loop.
        return self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), addr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="JSON: tenants, apps, mailboxes, token_lifetime, faults")
    ap.add_argument("--cert", required=True, help="PEM server certificate (chain)")
    ap.add_argument("--key", required=True, help="PEM private key")
    ap.add_argument("--log", required=True, help="JSON Lines file every request is appended to")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])  # HTTP/1.1 only; clients must not insist on h2
    open(args.log, "a").close()
    server = Server((args.host, args.port), State(config), context, args.log)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
