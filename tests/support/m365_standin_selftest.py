#!/usr/bin/env python3
"""Self-test of m365_standin.py: drives it over HTTPS, from 127.0.0.2 as the
source address (as exogate's remediation client will), through a full Graph
flow and an EWS flow, token issue with a secret and with RS256/PS256
certificate assertions, token expiry, injected throttling and failures, an
EWS-disabled tenant, and one malformed request per API; then reads the
request log. Needs python3 and the openssl command line tool.

    python3 tests/support/m365_standin_selftest.py

Prints one line per check and "N passed, N failed" at the end; exits 1 on
any failure.
"""

import base64
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
TENANT = "4f1e7c52-93a8-4d26-b0e1-6c2a9d8b3f70"
CLIENT = "0b5e6c3a-2f41-4d8e-9c7a-5e1f2d3c4b6a"
SECRET = "Qx8~selftest-secret.value_0123456789"
UA = "exogate-remediation/0.1 (+selftest)"
SOURCE = "127.0.0.2"
IMID_PLUS = "<CAF+q1w2e3'r4@mail.gmail.example>"  # '+' must be %2B, the quote doubled in OData
IMID_EWS = "<ews-1@invoices-online.example>"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"

passed, failed = 0, 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, **kw).stdout


class Client:
    def __init__(self, port, ca):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.conn = None

    def request(self, method, path, body=b"", headers=None):
        headers = dict(headers or {})
        headers.setdefault("User-Agent", UA)
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                        source_address=(SOURCE, 0), timeout=10)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn = None
                if attempt == 2:
                    raise

    def token(self, scope, **form):
        fields = {"client_id": CLIENT, "scope": scope, "grant_type": "client_credentials", **form}
        return self.request("POST", f"/{TENANT}/oauth2/v2.0/token", urllib.parse.urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})


def assertion(key, cert_der, alg, port, **override):
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT", "x5t#S256": b64url(hashlib.sha256(cert_der).digest())}
    if alg == "RS256":
        header = {"alg": alg, "typ": "JWT", "x5t": b64url(hashlib.sha1(cert_der).digest())}
    claims = {"aud": f"https://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token", "iss": CLIENT, "sub": CLIENT,
              "jti": str(uuid.uuid4()), "nbf": now, "iat": now, "exp": now + 300}
    header.update(override.pop("header", {}))
    claims.update(override)
    signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"] if alg == "PS256" else []
    sig = openssl("dgst", "-sha256", "-sign", str(key), *opts, input=signing.encode())
    return f"{signing}.{b64url(sig)}"


def soap(operation, mailbox, version="Exchange2016", body_ns=M_NS, impersonate=True):
    imp = (f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>"
           "</t:ConnectingSID></t:ExchangeImpersonation>") if impersonate else ""
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/" xmlns:t="{T_NS}" xmlns:m="{body_ns}"><soap:Header><t:RequestServerVersion '
            f'Version="{version}"/>{imp}</soap:Header><soap:Body>{operation}</soap:Body></soap:Envelope>').encode()


def main():
    tmp = Path(tempfile.mkdtemp(prefix="m365-standin-selftest-"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(tmp / "server.key"), "-out", str(tmp / "server.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=exogate-remediation",
            "-keyout", str(tmp / "client.key"), "-out", str(tmp / "client.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
            "-keyout", str(tmp / "other.key"), "-out", str(tmp / "other.pem"))
    cert_der = base64.b64decode("".join((tmp / "client.pem").read_text().split("-----")[2].split()))
    other_der = base64.b64decode("".join((tmp / "other.pem").read_text().split("-----")[2].split()))
    config = {
        "token_lifetime": 3599,
        "tenants": {TENANT: {
            "domains": ["contoso.com", "contoso.onmicrosoft.com"],
            "apps": {CLIENT: {"secret": SECRET, "certificates": [str(tmp / "client.pem")],
                              "graph_roles": ["Mail.ReadWrite"], "ews_roles": ["full_access_as_app"]}},
            "mailboxes": {
                "dana@contoso.com": {"messages": [{"internetMessageId": IMID_PLUS, "subject": "Invoice"},
                                                  {"internetMessageId": "<other@x.example>"}],
                                     "folders": [{"displayName": "Quarantine", "id": "AAMkQuarantineFolder0AAA="}]},
                "erik@contoso.com": {"messages": [{"internetMessageId": IMID_PLUS, "folder": "junkemail"}]},
                "fatima@contoso.com": {"messages": [{"internetMessageId": IMID_PLUS}]},
                "gus@contoso.com": {"messages": [{"internetMessageId": IMID_EWS}]},
            }}},
        "faults": [{"api": "graph", "mailbox": "erik@contoso.com", "calls": [1], "status": 429, "retry_after": 1},
                   {"api": "graph", "mailbox": "fatima@contoso.com", "first": 2, "status": 500},
                   {"api": "ews", "op": "ews.FindItem", "mailbox": "gus@contoso.com", "calls": [1],
                    "ews_server_busy": 1500}],
    }
    (tmp / "config.json").write_text(json.dumps(config))
    log = tmp / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, str(HERE / "m365_standin.py"), "--config", str(tmp / "config.json"),
                             "--cert", str(tmp / "server.pem"), "--key", str(tmp / "server.key"), "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"ready (\d+)\n", line)
        if not m:
            print(f"stand-in did not start: {line!r} {proc.stderr.read()}")
            return 1
        run(Client(int(m.group(1)), str(tmp / "server.pem")), int(m.group(1)), tmp, cert_der, other_der, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def run(c, port, tmp, cert_der, other_der, log):
    graph_scope = "https://graph.microsoft.com/.default"
    ews_scope = "https://outlook.office365.com/.default"

    # --- token endpoint
    s, h, b = c.token(graph_scope, client_secret=SECRET)
    tok = json.loads(b)
    check("token: client_secret gives a Bearer token with expires_in", s == 200 and tok.get("token_type") == "Bearer"
          and isinstance(tok.get("expires_in"), int) and tok.get("access_token"), (s, b[:300]))
    graph = {"Authorization": f"Bearer {tok['access_token']}"}
    s, _, b = c.token(graph_scope, client_secret="wrong")
    check("token: a wrong secret is 401 invalid_client AADSTS7000215",
          s == 401 and json.loads(b)["error"] == "invalid_client" and 7000215 in json.loads(b)["error_codes"], b[:300])
    for alg in ("PS256", "RS256"):
        s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                          client_assertion=assertion(tmp / "client.key", cert_der, alg, port))
        check(f"token: a {alg} certificate assertion is accepted", s == 200, b[:400])
    bad = assertion(tmp / "client.key", cert_der, "PS256", port)
    bad = bad[:-6] + ("AAAAAA" if not bad.endswith("AAAAAA") else "BBBBBB")
    s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=bad)
    check("token: a tampered signature is refused", s == 401 and "signature" in json.loads(b)["error_description"],
          b[:300])
    s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=assertion(tmp / "other.key", other_der, "PS256", port))
    check("token: an unregistered certificate is refused", s == 401 and "AADSTS700027" in b.decode(), b[:300])
    s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=assertion(tmp / "client.key", cert_der, "PS256", port,
                                                 aud="https://login.example/other/oauth2/v2.0/token"))
    check("token: a wrong aud is refused", s == 401 and "aud" in json.loads(b)["error_description"], b[:300])
    s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=assertion(tmp / "client.key", cert_der, "PS256", port,
                                                 exp=int(time.time()) - 5))
    check("token: an expired assertion is refused", s == 401 and "AADSTS700024" in b.decode(), b[:300])
    s, _, b = c.token(graph_scope, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                      client_assertion=assertion(tmp / "client.key", cert_der, "PS256", port, iss="someone-else"))
    check("token: iss other than the client id is refused", s == 401 and "iss" in b.decode(), b[:300])
    s, _, b = c.request("POST", f"/{TENANT}/oauth2/v2.0/token",
                        json.dumps({"client_id": CLIENT}).encode(), {"Content-Type": "application/json"})
    check("malformed token request (JSON body) is a readable 400",
          s == 400 and "application/x-www-form-urlencoded" in json.loads(b)["error_description"], b[:300])

    # --- Graph flow
    q = "$filter=" + urllib.parse.quote(f"internetMessageId eq '{IMID_PLUS.replace(chr(39), chr(39) * 2)}'",
                                        safe="") + "&$select=id,internetMessageId,parentFolderId"
    s, h, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}", headers=graph)
    found = json.loads(b)
    check("graph: list by internetMessageId finds the message with id and parentFolderId",
          s == 200 and len(found["value"]) == 1 and found["value"][0]["internetMessageId"] == IMID_PLUS
          and "parentFolderId" in found["value"][0] and "@odata.context" in found, b[:400])
    msg_id = found["value"][0]["id"]
    q_raw_plus = "$filter=" + urllib.parse.quote(f"internetMessageId eq '{IMID_PLUS.replace(chr(39), chr(39) * 2)}'",
                                                 safe="+")
    s, _, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q_raw_plus}", headers=graph)
    check("graph: a '+' left unencoded reads as a space and finds nothing", s == 200 and json.loads(b)["value"] == [],
          b[:300])
    s, _, b = c.request("POST", f"/v1.0/users/dana@contoso.com/messages/{urllib.parse.quote(msg_id, safe='')}/move",
                        json.dumps({"destinationId": "deleteditems"}).encode(),
                        {**graph, "Content-Type": "application/json", "client-request-id": str(uuid.uuid4())})
    moved = json.loads(b)
    check("graph: move answers 201 with the message under a new id", s == 201 and moved["id"] != msg_id, b[:300])
    s, _, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}", headers=graph)
    again = json.loads(b)["value"]
    check("graph: the moved message is found again in Deleted Items",
          len(again) == 1 and again[0]["id"] == moved["id"] and again[0]["parentFolderId"] == moved["parentFolderId"],
          again)
    s, _, b = c.request("DELETE", f"/v1.0/users/dana@contoso.com/messages/{msg_id}", headers=graph)
    check("graph: the old id is gone after the move (404 ErrorItemNotFound)",
          s == 404 and json.loads(b)["error"]["code"] == "ErrorItemNotFound", b[:300])
    s, _, _ = c.request("DELETE", f"/v1.0/users/dana@contoso.com/messages/{moved['id']}", headers=graph)
    s2, _, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}", headers=graph)
    check("graph: DELETE is 204 and the message leaves the mailbox listing",
          s == 204 and json.loads(b)["value"] == [], (s, b[:200]))
    s, h, b = c.request("GET", f"/v1.0/users/erik@contoso.com/messages?{q}", headers=graph)
    check("graph: injected 429 carries Retry-After", s == 429 and h.get("retry-after") == "1"
          and json.loads(b)["error"]["code"] == "ApplicationThrottled", (s, h))
    s, _, b = c.request("GET", f"/v1.0/users/erik@contoso.com/messages?{q}", headers=graph)
    erik = json.loads(b)["value"]
    s, _, _ = c.request("POST", f"/v1.0/users/erik@contoso.com/messages/{erik[0]['id']}/permanentDelete",
                        headers=graph)
    check("graph: after the 429 the retry works and permanentDelete is 204", s == 204, s)
    statuses = [c.request("GET", f"/v1.0/users/fatima@contoso.com/messages?{q}", headers=graph)[0] for _ in range(3)]
    check("graph: a mailbox failing twice answers 500, 500, then 200", statuses == [500, 500, 200], statuses)
    s, _, b = c.request("GET", f"/v1.0/users/nobody@contoso.com/messages?{q}", headers=graph)
    check("graph: an unknown user is 404 ErrorInvalidUser", s == 404 and "ErrorInvalidUser" in b.decode(), b[:200])
    s, _, b = c.request("GET", "/v1.0/users/dana@contoso.com/messages?$filter=internetMessageId%20eq%20%3Cx%3E", headers=graph)
    check("malformed Graph request (unquoted filter value) is a readable 400",
          s == 400 and "single quotes" in json.loads(b)["error"]["message"], b[:300])
    s, _, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}")
    check("graph: no Authorization is 401 InvalidAuthenticationToken",
          s == 401 and json.loads(b)["error"]["code"] == "InvalidAuthenticationToken", b[:200])

    # --- token lifetime: reuse until expiry, then 401
    c.request("POST", "/_standin/config", json.dumps({"token_lifetime": 2}).encode())
    s, _, b = c.token(graph_scope, client_secret=SECRET)
    short = {"Authorization": f"Bearer {json.loads(b)['access_token']}"}
    s1 = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}", headers=short)[0]
    time.sleep(2.5)
    s2, _, b = c.request("GET", f"/v1.0/users/dana@contoso.com/messages?{q}", headers=short)
    check("graph: a token works until it expires, then 401 'token is expired'",
          s1 == 200 and s2 == 401 and "expired" in b.decode(), (s1, s2, b[:200]))
    c.request("POST", "/_standin/config", json.dumps({"token_lifetime": 3599}).encode())

    # --- EWS flow
    s, _, b = c.token(ews_scope, client_secret=SECRET)
    ews = {"Authorization": f"Bearer {json.loads(b)['access_token']}", "Content-Type": "text/xml; charset=utf-8",
           "X-AnchorMailbox": "gus@contoso.com"}
    find_folder = ('<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>'
                   "</m:FolderShape><m:Restriction><t:IsEqualTo><t:FieldURI FieldURI=\"folder:DisplayName\"/>"
                   '<t:FieldURIOrConstant><t:Constant Value="AllItems"/></t:FieldURIOrConstant></t:IsEqualTo>'
                   '</m:Restriction><m:ParentFolderIds><t:DistinguishedFolderId Id="root"/></m:ParentFolderIds>'
                   "</m:FindFolder>")
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_folder, "gus@contoso.com"), ews)
    all_items = re.search(rb'<t:FolderId Id="([^"]+)"', b)
    check("ews: FindFolder finds the AllItems search folder", s == 200 and all_items is not None, b[:400])

    def find_item(extended=False):
        path = ('<t:ExtendedFieldURI PropertyTag="0x1035" PropertyType="String"/>' if extended else
                '<t:FieldURI FieldURI="message:InternetMessageId"/>')
        return (f'<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
                f'<t:AdditionalProperties><t:FieldURI FieldURI="item:ParentFolderId"/></t:AdditionalProperties>'
                f'</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="10" Offset="0" BasePoint="Beginning"/>'
                f"<m:Restriction><t:IsEqualTo>{path}<t:FieldURIOrConstant><t:Constant Value=\"{IMID_EWS}\"/>"
                f"</t:FieldURIOrConstant></t:IsEqualTo></m:Restriction><m:ParentFolderIds>"
                f'<t:FolderId Id="{all_items.group(1).decode()}"/></m:ParentFolderIds></m:FindItem>'
                ).replace(f'Value="{IMID_EWS}"', f'Value="{IMID_EWS.replace("<", "&lt;").replace(">", "&gt;")}"')

    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com"), ews)
    check("ews: injected ErrorServerBusy carries BackOffMilliseconds",
          s == 500 and b'Name="BackOffMilliseconds">1500<' in b and b"ErrorServerBusy" in b, b[:400])
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com"), ews)
    item = re.search(rb'<t:ItemId Id="([^"]+)"', b)
    check("ews: FindItem on message:InternetMessageId finds the item (ResponseClass Success, NoError)",
          s == 200 and item and b'ResponseClass="Success"' in b and b"<m:ResponseCode>NoError" in b, b[:500])
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(extended=True), "gus@contoso.com"), ews)
    check("ews: FindItem on PR_INTERNET_MESSAGE_ID (0x1035) finds it too", s == 200 and b"<t:ItemId" in b, b[:300])
    move = (f'<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="junkemail"/></m:ToFolderId><m:ItemIds>'
            f'<t:ItemId Id="{item.group(1).decode()}"/></m:ItemIds></m:MoveItem>')
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(move, "gus@contoso.com"), ews)
    new_id = re.search(rb'<t:ItemId Id="([^"]+)"', b)
    check("ews: MoveItem to junkemail succeeds with a new item id",
          s == 200 and b'ResponseClass="Success"' in b and new_id and new_id.group(1) != item.group(1), b[:400])
    delete = (f'<m:DeleteItem DeleteType="SoftDelete"><m:ItemIds><t:ItemId Id="{new_id.group(1).decode()}"/>'
              "</m:ItemIds></m:DeleteItem>")
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(delete, "gus@contoso.com"), ews)
    state = json.loads(c.request("GET", "/_standin/state")[2])
    gus = state["mailboxes"]["gus@contoso.com"]["messages"][0]
    check("ews: DeleteItem SoftDelete puts the item in the dumpster",
          s == 200 and gus["folder"] == "recoverableitemsdeletions", (s, gus))
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(delete, "gus@contoso.com").replace(
        b' DeleteType="SoftDelete"', b""), ews)
    check("malformed EWS request (DeleteItem without DeleteType) is a readable 400",
          s == 400 and b"DeleteType" in b and b"<faultstring" in b, b[:300])
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com",
                                                          body_ns=M_NS.replace("http:", "https:")), ews)
    check("ews: https:// namespaces (a documentation artefact) are refused with the reason", s == 400
          and b"http, not https" in b, b[:300])
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com"),
                        {k: v for k, v in ews.items() if k != "X-AnchorMailbox"})
    check("ews: impersonation without X-AnchorMailbox is refused", s == 400 and b"X-AnchorMailbox" in b, b[:300])
    s, _, _ = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com"), {**ews, **graph})
    check("ews: a Graph token is refused (wrong audience)", s == 401, s)
    tenants = json.loads(json.dumps({"tenants": {TENANT: {**json.loads((tmp / "config.json").read_text())
                                                          ["tenants"][TENANT], "ews": {"enabled": False}}}}))
    c.request("POST", "/_standin/config", json.dumps(tenants).encode())
    s, _, b = c.request("POST", "/EWS/Exchange.asmx", soap(find_item(), "gus@contoso.com"), ews)
    check("ews: an EWS-disabled tenant answers 403", s == 403, (s, b[:200]))

    # --- the log
    records = [json.loads(line) for line in log.read_text().splitlines()]
    api = [r for r in records if r.get("api") in ("token", "graph", "ews")]
    check("log: every request is recorded with the source address 127.0.0.2",
          api and all(r["peer_ip"] == SOURCE for r in api), {r["peer_ip"] for r in api})
    check("log: every request records the User-Agent", all(r["user_agent"] == UA for r in api))
    check("log: the secret and the tokens never appear", SECRET not in log.read_text()
          and tok["access_token"] not in log.read_text())
    moves = [r for r in records if r.get("op") == "graph.move" and r["status"] == 201]
    check("log: the move is recorded with mailbox, message id and destination",
          moves and moves[0]["mailbox"] == "dana@contoso.com" and moves[0]["destination"] == "deleteditems"
          and moves[0]["results"][0]["id"] == msg_id, moves)
    rejected = [r for r in records if r.get("outcome") == "rejected"]
    check("log: refused requests say why", rejected and all(r.get("error") for r in rejected))


if __name__ == "__main__":
    sys.exit(main())
