#!/usr/bin/env python3
"""Runs a private Dovecot 2.3 IMAP server for one cartero integration test.

    dovecot.py --dir DIR --cert PEM --key PEM --user alice:s3cret [--user bob:pw ...]

Writes DIR/dovecot.conf (everything the instance uses lives under DIR), picks two
free ports on 127.0.0.1, runs `dovecot -F -c DIR/dovecot.conf` as a child and, once
both ports accept connections and IMAP greets, prints one line

    READY <imap_port> <imaps_port>

to stdout. <imap_port> speaks plain IMAP with STARTTLS, <imaps_port> implicit TLS.
LOGIN and AUTHENTICATE PLAIN work with or without TLS (disable_plaintext_auth = no).
Each user's mail is a maildir at DIR/mail/<user>/Maildir.

SIGTERM or SIGINT (or, with --watch-stdin, EOF on stdin) stops Dovecot and exits 0.
If Dovecot dies on its own the script exits non-zero; its log is DIR/dovecot.log.

Dovecot starts as root and drops privileges: the mail user is uid/gid 65534
(nobody/nogroup), logins run as `dovenull`, auth as `dovecot`. So DIR is made 0755 and
every directory above it must be searchable by others (a 0700 parent will not do).
"""

import argparse
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

MAIL_UID = 65534  # nobody
MAIL_GID = 65534  # nogroup
START_TIMEOUT = 20.0  # seconds
UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the NUL
PR_SET_PDEATHSIG = 1

CONFIG = """\
# Written by tests/peers/dovecot.py: a private instance for one test.
protocols = imap
listen = 127.0.0.1
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{ssl_dh}
disable_plaintext_auth = no
auth_mechanisms = plain login
# Real servers wait 2s after a failed login; tests should not.
auth_failure_delay = 0

# The passwd-file gives uid/gid 65534 and home DIR/mail/<user>.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
}}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
first_valid_gid = {gid}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
# Nothing else listens on the network: protocols = imap starts no POP3, LMTP or
# submission service, and Dovecot's internal services use unix sockets in base_dir.
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="scratch directory this instance owns")
    p.add_argument("--cert", required=True, help="PEM certificate chain")
    p.add_argument("--key", required=True, help="PEM private key")
    p.add_argument("--user", action="append", required=True, metavar="NAME:PASSWORD",
                   help="an IMAP account; repeat for more")
    p.add_argument("--dovecot", default=shutil.which("dovecot") or "/usr/sbin/dovecot",
                   help="the dovecot binary")
    p.add_argument("--watch-stdin", action="store_true", help="also stop when stdin reaches EOF")
    args = p.parse_args(argv)
    for user in args.user:
        name, _, password = user.partition(":")
        if not name or not password or ":" in password or any(c in name for c in ":/ "):
            p.error(f"--user takes NAME:PASSWORD, got {user!r}")
    return args


def free_ports(count):
    """Ports the kernel hands out for 127.0.0.1 right now (bound, read, closed)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def check_reachable(path):
    """Fails when a directory above `path` keeps out the unprivileged Dovecot users."""
    parent = os.path.dirname(path)
    while True:
        mode = os.stat(parent).st_mode
        if not mode & stat.S_IXOTH:
            raise SystemExit(
                f"dovecot.py: {parent} (mode {stat.filemode(mode)}) is not searchable by "
                f"others; Dovecot's unprivileged processes could not reach {path}"
            )
        if parent == "/":
            return
        parent = os.path.dirname(parent)


def remove_stale_pid_file(path):
    """Lets a new instance start in a DIR whose last Dovecot died without cleaning up.

    Dovecot refuses to start while the PID in master.pid exists. A master that lost
    its parent may still be shutting down (that takes about 1.5 s), or linger as a
    zombie until PID 1 reaps it (slowly, on this machine), which counts as gone.
    """
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 5
    while process_running(pid):
        if time.monotonic() > deadline:
            raise SystemExit(f"dovecot.py: a Dovecot (pid {pid}) already runs from {path}")
        time.sleep(0.1)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def process_running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def prepare(args, imap_port, imaps_port):
    """Writes the config, the users file and the mail directories under --dir."""
    root = os.path.abspath(args.dir)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    check_reachable(root)
    longest_socket = os.path.join(root, "run", "login", "imap-urlauth")
    if len(longest_socket) > UNIX_SOCKET_PATH_MAX - 10:
        raise SystemExit(f"dovecot.py: --dir {root} is too long for unix socket paths")
    for sub in ("run", "state"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    remove_stale_pid_file(os.path.join(root, "run", "master.pid"))

    lines = []
    for user in args.user:
        name, _, password = user.partition(":")
        home = os.path.join(root, "mail", name)
        os.makedirs(home, exist_ok=True)
        os.chown(os.path.join(root, "mail"), MAIL_UID, MAIL_GID)
        os.chown(home, MAIL_UID, MAIL_GID)
        lines.append(f"{name}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{home}::\n")
    users = os.path.join(root, "users")
    with open(users, "w") as f:
        f.writelines(lines)
    os.chmod(users, 0o644)

    dh = "/usr/share/dovecot/dh.pem"
    config = CONFIG.format(
        instance=f"cartero-test-{imap_port}",
        dir=root,
        cert=os.path.abspath(args.cert),
        key=os.path.abspath(args.key),
        ssl_dh=f"ssl_dh = <{dh}" if os.path.exists(dh) else "",
        uid=MAIL_UID,
        gid=MAIL_GID,
        imap_port=imap_port,
        imaps_port=imaps_port,
    )
    path = os.path.join(root, "dovecot.conf")
    with open(path, "w") as f:
        f.write(config)
    return path


def die_with_parent():
    """In the child before exec: Dovecot gets SIGTERM if this script dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def imap_greets(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(100).startswith(b"* OK")
    except OSError:
        return False


def port_accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start(args):
    """Starts Dovecot on fresh ports; returns (process, imap_port, imaps_port) or None."""
    imap_port, imaps_port = free_ports(2)
    config = prepare(args, imap_port, imaps_port)
    log_path = os.path.join(os.path.abspath(args.dir), "dovecot.log")
    log_start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    proc = subprocess.Popen(
        [args.dovecot, "-F", "-c", config],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if port_accepts(imaps_port) and imap_greets(imap_port):
            return proc, imap_port, imaps_port
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log = ""
    if os.path.exists(log_path):
        with open(log_path, errors="replace") as f:
            f.seek(log_start)
            log = f.read()
    if "Address already in use" in log:
        print("dovecot.py: lost a race for a port; trying other ports", file=sys.stderr)
        return None
    print(f"dovecot.py: dovecot did not come up (exit {proc.returncode}); log:\n{log}", file=sys.stderr)
    raise SystemExit(1)


def main(argv=None):
    args = parse_args(argv)
    for _ in range(3):
        started = start(args)
        if started:
            break
    else:
        return 1
    proc, imap_port, imaps_port = started

    stopping = threading.Event()

    def stop(*_):
        stopping.set()
        if proc.poll() is None:
            proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.watch_stdin:
        def watch():
            while sys.stdin.buffer.read1(4096):
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()

    print(f"READY {imap_port} {imaps_port}", flush=True)
    kill_at = None
    while proc.poll() is None:
        if stopping.is_set():
            kill_at = kill_at or time.monotonic() + 5
            if time.monotonic() > kill_at:
                proc.kill()
        time.sleep(0.1)
    if stopping.is_set():
        return 0
    print(f"dovecot.py: dovecot exited on its own with {proc.returncode}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
