#!/usr/bin/env python3
"""A scriptable SMTP server for cartero's integration tests (aiosmtpd 1.4.6).

Rust tests spawn it as a subprocess, read one line ``READY <port>`` from its stdout,
talk SMTP to 127.0.0.1:<port>, then stop it with SIGTERM (or SIGINT).

Modes (``--mode``):
  plain     plain SMTP, no TLS offered
  starttls  plain SMTP that offers STARTTLS (needs --cert/--key)
  tls       implicit TLS from the first byte, as on port 465 (needs --cert/--key)
  silent    accepts TCP connections and never sends a byte (greeting timeouts)

``--auth USER:PASS`` offers AUTH PLAIN and LOGIN and requires authentication before
MAIL. ``--auth-require-tls`` (starttls mode only) offers AUTH only after STARTTLS.
``--require-starttls`` (starttls mode) answers 530 to every command but EHLO, NOOP,
STARTTLS and QUIT until TLS is up.

``--script FILE.json`` replays canned replies, such as real provider answers. Keys
are stages: greeting, helo, ehlo, starttls, auth, mail, rcpt, data, plus
"auth:<user>", "mail:<address>", "rcpt:<address>" for one user or address (these
win over the plain stage). A value is one of:
  null                           no override
  "550 5.1.1 user unknown"       this reply every time; "\\n" separates lines
  ["534-5.7.9 line one", "534 5.7.9 line two"]   a multi-line reply
  {"reply": ..., "times": 2, "delay": 1.5}
      the reply (a string or list as above, or null for the normal answer) for the
      first `times` uses only (default: always), after waiting `delay` seconds
      (for auth, a delay is honoured on the plain "auth" key only).
Multi-line replies are sent with proper "CODE-" continuation lines whatever
separators the script used; a line without a code gets the first line's code.
A 2xx reply lets the stage go ahead (the message is still stored for "data"); any
other reply refuses it. A non-2xx greeting is sent and the connection is closed.
An "ehlo" reply replaces the whole capability list (what is offered is unchanged).
Counters are shared by all connections, so "times" drives retry tests.

``--maildir DIR`` stores each accepted message as DIR/<n>.eml (raw bytes as
received, dot-unstuffed) and then appends one JSON line to DIR/log.jsonl:
  {"ts", "mail_from", "rcpt_tos", "auth_user", "size", "message_id", "tls", "peer_port"}
(peer_port, the client's port, tells which connection brought the message).
The null reverse-path (MAIL FROM:<>) is logged as "".
"""

import argparse
import asyncio
import email.parser
import json
import logging
import os
import re
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

STAGES = {"greeting", "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data"}
PER_ADDRESS_STAGES = {"auth", "mail", "rcpt"}
REPLY_LINE = re.compile(r"^(\d{3})(?:[ -](.*))?$")


# --- script ----------------------------------------------------------------------------


def format_reply(reply):
    """Turns a script reply (str with \\n, or list of lines) into one SMTP reply string.

    The lines are joined with CRLF; aiosmtpd's push() adds the final CRLF.
    """
    lines = reply.split("\n") if isinstance(reply, str) else list(reply)
    lines = [line.rstrip("\r") for line in lines if line.strip("\r") != ""]
    if not lines:
        raise ValueError("empty reply")
    first = REPLY_LINE.match(lines[0])
    if not first:
        raise ValueError(f"reply does not start with a 3-digit code: {lines[0]!r}")
    out = []
    for i, line in enumerate(lines):
        match = REPLY_LINE.match(line)
        code, text = (match.group(1), match.group(2) or "") if match else (first.group(1), line)
        separator = "-" if i < len(lines) - 1 else " "
        out.append(f"{code}{separator}{text}")
    return "\r\n".join(out)


class Entry:
    """One scripted stage: a reply (or None for the normal answer), a use limit, a delay."""

    def __init__(self, key, value):
        if not isinstance(value, dict):
            value = {"reply": value}
        unknown = set(value) - {"reply", "times", "delay"}
        if unknown:
            raise ValueError(f"{key}: unknown fields {sorted(unknown)}")
        reply = value.get("reply")
        self.reply = None if reply is None else format_reply(reply)
        self.times = value.get("times")  # None: every time
        if self.times is not None and (not isinstance(self.times, int) or self.times < 0):
            raise ValueError(f"{key}: times must be a whole number >= 0")
        self.delay = float(value.get("delay") or 0)


class Script:
    """Scripted replies by stage, shared by all connections of this server."""

    def __init__(self, raw):
        self.entries = {}
        for key, value in raw.items():
            stage, _, who = key.partition(":")
            if stage not in STAGES or (who and stage not in PER_ADDRESS_STAGES):
                raise ValueError(f"unknown script key {key!r}")
            if value is not None:
                self.entries[key.lower() if who else key] = Entry(key, value)

    def has(self, stage):
        return any(key.partition(":")[0] == stage for key in self.entries)

    def take(self, stage, who=None):
        """Returns the Entry for this use of the stage, or None; counts the use."""
        keys = [f"{stage}:{who.lower()}"] if who else []
        for key in keys + [stage]:
            entry = self.entries.get(key)
            if entry is None:
                continue
            if entry.times is not None:
                if entry.times <= 0:
                    continue
                entry.times -= 1
            return entry
        return None

    async def reply(self, stage, who=None):
        """The scripted reply for this use of the stage, after its delay; None: answer normally."""
        entry = self.take(stage, who)
        if entry is None:
            return None
        await asyncio.sleep(entry.delay)
        return entry.reply


def is_positive(reply):
    return reply.startswith("2")


# --- SMTP ------------------------------------------------------------------------------


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with a scriptable greeting and STARTTLS reply.

    aiosmtpd has no hook before the greeting or before STARTTLS, so these two stages
    are handled here; all others go through the handler's hooks.
    """

    # Postfix's LOGIN prompts; aiosmtpd's own are "User Name\0" and "Password\0".
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler, script, connections, **kwargs):
        super().__init__(handler, **kwargs)
        self.script = script
        self.connections = connections
        self.greeting_override = None

    def connection_made(self, transport):
        if self.transport is None:
            self.connections.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error):
        self.connections.discard(self._original_transport or self.transport)
        super().connection_lost(error)

    async def _handle_client(self):
        reply = await self.script.reply("greeting")
        if reply is not None and not is_positive(reply):
            await self.push(reply)
            self.transport.close()
            return
        self.greeting_override = reply
        await super()._handle_client()

    async def push(self, status):
        # The first push of a connection is the greeting.
        if self.greeting_override is not None:
            status, self.greeting_override = self.greeting_override, None
        await super().push(status)

    async def smtp_STARTTLS(self, arg):
        reply = await self.script.reply("starttls")
        if reply is not None and not is_positive(reply):
            await self.push(reply)
            return
        # A 2xx scripted reply goes ahead with aiosmtpd's own "220 Ready to start TLS".
        await super().smtp_STARTTLS(arg)


class Handler:
    """aiosmtpd handler: scripted replies per stage, credentials, the maildir."""

    def __init__(self, script, credentials, offer_auth, maildir):
        # Careful: aiosmtpd takes every handler attribute named auth_* for an AUTH
        # mechanism, so no attribute here may start with "auth_".
        self.script = script
        self.credentials = credentials  # (user, password) or None: any login passes
        self.offer_auth = offer_auth
        self.maildir = maildir
        self.count = 0
        if maildir:
            os.makedirs(maildir, exist_ok=True)
            self.count = len([n for n in os.listdir(maildir) if n.endswith(".eml")])

    async def handle_HELO(self, server, session, envelope, hostname):
        reply = await self.script.reply("helo") or f"250 {server.hostname}"
        if is_positive(reply):
            session.host_name = hostname
        return reply

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        reply = await self.script.reply("ehlo")
        # aiosmtpd leaves setting session.host_name to a handle_EHLO hook.
        if reply is not None:
            if is_positive(reply):
                session.host_name = hostname
            return [reply]
        session.host_name = hostname
        if not self.offer_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_AUTH(self, server, session, envelope, args):
        # Runs before the (synchronous) authenticator: only the scripted delay lives here.
        entry = self.script.entries.get("auth")
        if entry is not None and entry.delay and (entry.times is None or entry.times > 0):
            await asyncio.sleep(entry.delay)
        return MISSING

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        entry = self.script.take("auth", user)
        if entry is not None and entry.reply is not None:
            if is_positive(entry.reply):
                return AuthResult(success=True, message=entry.reply, auth_data=auth_data)
            # handled=False makes aiosmtpd send `message`; with the default
            # handled=True it would send no reply at all.
            return AuthResult(success=False, handled=False, message=entry.reply)
        if self.credentials is None or self.credentials == (user, password):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = await self.script.reply("mail", address) or "250 2.1.0 Ok"
        if is_positive(reply):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = await self.script.reply("rcpt", address) or "250 2.1.5 Ok"
        if is_positive(reply):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server, session, envelope):
        reply = await self.script.reply("data")
        if reply is not None and not is_positive(reply):
            return reply
        self.count += 1
        if self.maildir:
            self.store(server, session, envelope)
        return reply or f"250 2.0.0 Ok: queued as {self.count}"

    def store(self, server, session, envelope):
        content = envelope.original_content
        path = os.path.join(self.maildir, f"{self.count}.eml")
        with open(path, "wb") as f:
            f.write(content)
        headers = email.parser.BytesHeaderParser().parsebytes(content)
        message_id = headers.get("Message-ID")
        auth_user = None
        if session.authenticated and session.auth_data is not None:
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        record = {
            "ts": time.time(),
            "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": auth_user,
            "size": len(content),
            "message_id": str(message_id).strip() if message_id is not None else None,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "peer_port": server.transport.get_extra_info("peername")[1],
        }
        with open(os.path.join(self.maildir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")


class Silent(asyncio.Protocol):
    """Accepts a connection and never answers; keeps it open until shutdown."""

    def __init__(self, connections):
        self.connections = connections

    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(transport)

    def connection_lost(self, error):
        self.connections.discard(self.transport)


# --- main ------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--mode", choices=["plain", "starttls", "tls", "silent"], default="plain")
    p.add_argument("--cert", help="PEM certificate chain (starttls, tls)")
    p.add_argument("--key", help="PEM private key (starttls, tls)")
    p.add_argument("--auth", metavar="USER:PASS", help="offer AUTH PLAIN/LOGIN, require it for MAIL")
    p.add_argument("--auth-require-tls", action="store_true", help="starttls: offer AUTH only after STARTTLS")
    p.add_argument("--require-starttls", action="store_true", help="starttls: refuse MAIL etc. before STARTTLS")
    p.add_argument("--script", metavar="FILE.json", help="canned replies by stage")
    p.add_argument("--maildir", metavar="DIR", help="store accepted messages here")
    p.add_argument("--hostname", default="localhost", help="name in the greeting and EHLO reply")
    p.add_argument("--smtputf8", action="store_true", help="offer SMTPUTF8")
    p.add_argument("--verbose", action="store_true", help="log the SMTP dialogue to stderr")
    args = p.parse_args(argv)
    if args.mode in ("starttls", "tls") and not (args.cert and args.key):
        p.error(f"--mode {args.mode} needs --cert and --key")
    if args.auth and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    return args


def load_script(path):
    if not path:
        return Script({})
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError("the script must be a JSON object")
    return Script(raw)


async def serve(args):
    try:
        script = load_script(args.script)
    except (OSError, ValueError) as e:
        print(f"smtpd.py: bad --script: {e}", file=sys.stderr)
        return 2
    try:
        server, connections = await start_server(args, script)
    except (OSError, ssl.SSLError) as e:
        print(f"smtpd.py: cannot start: {e}", file=sys.stderr)
        return 2

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await stop.wait()

    server.close()
    for transport in list(connections):
        transport.close()
    await server.wait_closed()
    return 0


async def start_server(args, script):
    """Listens on --host/--port; returns the server and its set of open transports."""
    loop = asyncio.get_running_loop()
    connections = set()
    tls_context = None
    if args.mode in ("starttls", "tls"):
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    if args.mode == "silent":
        def factory():
            return Silent(connections)
        server = await loop.create_server(factory, args.host, args.port)
    else:
        credentials = tuple(args.auth.split(":", 1)) if args.auth else None
        offer_auth = credentials is not None or script.has("auth")
        handler = Handler(script, credentials, offer_auth, args.maildir)
        smtp_options = dict(
            hostname=args.hostname,
            ident="ESMTP cartero-test-peer",
            enable_SMTPUTF8=args.smtputf8,
            # aiosmtpd counts only STARTTLS as TLS: on an implicit-TLS port,
            # auth_require_tls=True would hide AUTH for good.
            auth_require_tls=args.mode == "starttls" and args.auth_require_tls,
            auth_required=credentials is not None,
            authenticator=handler.authenticate,
            auth_exclude_mechanism=None if offer_auth else ["PLAIN", "LOGIN"],
        )
        if args.mode == "starttls":
            smtp_options.update(tls_context=tls_context, require_starttls=args.require_starttls)

        def factory():
            return ScriptedSMTP(handler, script, connections, loop=loop, **smtp_options)

        server = await loop.create_server(
            factory, args.host, args.port, ssl=tls_context if args.mode == "tls" else None
        )
    return server, connections


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="smtpd.py %(levelname)s %(name)s: %(message)s",
    )
    # Requiring AUTH without TLS is what a plain-mode test peer is for.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").addFilter(
        lambda record: "auth_required == True but auth_require_tls == False" not in record.getMessage()
        and "login_data is deprecated" not in record.getMessage()
    )
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
