#!/usr/bin/env python3
"""demo_sinks.py — the outside world the demo notifier talks to.

./scripts/up runs this next to the notifier so that what the city sends out
has somewhere to land and a newcomer can read it: the SMS gateway, the 12345
hotline's callback, webhook receivers, and an SMTP server for e-mail to
departments and supervisors. Each message received is printed as one JSON
line (phone numbers masked) and answered as a real system would (HTTP 200
with a JSON body; SMTP 250), so nothing piles up as dead letters.

It verifies what it can: the hotline push-back's and webhooks' HMAC-SHA256
signatures (when it is given the secrets) and the SMS gateway's Bearer token,
and says "signature": "bad" in the line when one does not check out.

Standard library only. Stops on SIGTERM or Ctrl-C.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask(text):
    return PHONE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def say(kind, **fields):
    shanghai = time.gmtime(time.time() + 8 * 3600)
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S+08:00", shanghai), "sink": kind}
    line.update(fields)
    sys.stdout.write(mask(json.dumps(line, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


def check(secrets, message, signature):
    """'ok' when the signature is the HMAC-SHA256 of message under one of the
    comma-separated secrets, 'bad' when under none, 'unchecked' without any."""
    keys = [k for k in (secrets or "").split(",") if k]
    if not keys:
        return "unchecked"
    for key in keys:
        want = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(want, (signature or "").lower()):
            return "ok"
    return "bad"


def make_handler(args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.answer(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0") or 0)
            if n > 1 << 20:
                self.answer(413, {"error": "too large"})
                return
            body = self.rfile.read(n)
            try:
                doc = json.loads(body.decode("utf-8"))
            except ValueError:
                self.answer(400, {"error": "not JSON"})
                return
            h = self.headers
            path = self.path.split("?")[0]
            if path.startswith("/sms/"):
                token_ok = not args.sms_token or h.get("Authorization") == f"Bearer {args.sms_token}"
                say("sms", phone=doc.get("phone", ""), text=doc.get("text", ""),
                    delivery=h.get("X-Civicbus-Delivery", ""), token="ok" if token_ok else "bad")
                if not token_ok:
                    self.answer(401, {"error": "bad token"})
                    return
            elif path.startswith("/hotline/"):
                message = "\n".join([self.command, self.path, h.get("X-Hotline-Timestamp", ""),
                                     h.get("X-Hotline-Nonce", "")]).encode() + b"\n" + body
                say("hotline", ticket=doc.get("ticket_id", ""),
                    number=doc.get("hotline_ticket_id", ""), event=doc.get("event", ""),
                    seq=doc.get("sequence", ""), text=doc.get("text", ""),
                    signature=check(args.hotline_secret, message, h.get("X-Hotline-Signature")))
            else:
                message = h.get("X-Civicbus-Timestamp", "").encode() + b"." + body
                event = doc.get("event", {}) if isinstance(doc.get("event"), dict) else {}
                say("webhook", path=path, event=event.get("type", ""),
                    ticket=event.get("ticket_id", ""),
                    signature=check(args.webhook_secret, message, h.get("X-Civicbus-Signature")))
            self.answer(200, {"code": 0, "received": True})
    return Handler


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for libcurl: EHLO, MAIL, RCPT, DATA, QUIT."""

    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 demo-sinks ESMTP")
        mail_from, rcpt, lines = "", [], []
        for _ in range(10000):
            raw = self.rfile.readline(65536)
            if not raw:
                return
            cmd = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 demo-sinks")
            elif verb == "MAIL":
                mail_from = cmd[10:]
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpt.append(cmd[8:])
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go ahead")
                for _ in range(100000):
                    line = self.rfile.readline(65536).decode("utf-8", "replace").rstrip("\r\n")
                    if line == ".":
                        break
                    lines.append(line)
                subject = next((x[8:] for x in lines if x.lower().startswith("subject:")), "")
                say("email", to=rcpt, sender=mail_from, subject=subject)
                rcpt, lines = [], []
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


class ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http-ports", default="9200,9201,9202",
                   help="comma-separated ports for the HTTP sinks (hotline, SMS, webhooks; any path "
                        "on any of them works) [%(default)s]")
    p.add_argument("--smtp-port", type=int, default=2525, help="SMTP sink port [%(default)s]")
    p.add_argument("--sms-token", default=os.environ.get("CIVICBUS_SMS_TOKEN", ""),
                   help="the Bearer token the SMS gateway expects (default $CIVICBUS_SMS_TOKEN)")
    p.add_argument("--hotline-secret", default=os.environ.get("CIVICBUS_HOTLINE_SECRET", ""),
                   help="verify push-back signatures with this secret (default $CIVICBUS_HOTLINE_SECRET)")
    p.add_argument("--webhook-secret",
                   default=",".join(x for x in (os.environ.get("CIVICBUS_CONSOLE_WEBHOOK_SECRET", ""),
                                                os.environ.get("CIVICBUS_URBAN_WEBHOOK_SECRET", ""))
                                    if x),
                   help="verify webhook signatures with these comma-separated secrets (default "
                        "$CIVICBUS_CONSOLE_WEBHOOK_SECRET,$CIVICBUS_URBAN_WEBHOOK_SECRET)")
    args = p.parse_args()

    servers = []
    for port in [int(x) for x in args.http_ports.split(",") if x]:
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), make_handler(args)))
    servers.append(ThreadingTCP(("127.0.0.1", args.smtp_port), SmtpHandler))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print(json.dumps({"msg": "ready", "http": args.http_ports, "smtp": args.smtp_port},
                     separators=(",", ":")), flush=True)
    while not stop.wait(1.0):
        pass
    for s in servers:
        s.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
