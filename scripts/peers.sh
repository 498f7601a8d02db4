#!/usr/bin/env bash
# Installs the real servers that cartero's integration tests talk to on 127.0.0.1:
#   aiosmtpd 1.4.6 (for tests/peers/smtpd.py), Postfix's smtp-sink/smtp-source,
#   Dovecot 2.3 IMAP (for tests/peers/dovecot.py), swaks, and a running PostgreSQL 15
#   with a `cartero` role reachable over TCP.
# Also the browser end-to-end tests' tools: Debian's chromium (/usr/bin/chromium) and the
#   npm packages of tests/e2e (`npm ci`, needs node >= 20 already installed).
#
# Idempotent and non-interactive: safe to run again and again, with no stdin (CI).
# Runs `apt-get update` only when a package is missing. No system mail daemon is left
# running: Postfix and Dovecot are installed for their binaries, tests start their own.
# Exits non-zero when any peer is unavailable at the end.
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
export PIP_ROOT_USER_ACTION=ignore

PYTHON=${PYTHON:-python3}
PG_VERSION=15
PG_CLUSTER=main
PG_URL="postgres://cartero:cartero@127.0.0.1:5432/postgres"
REPO=$(cd "$(dirname "$0")/.." && pwd)
E2E_DIR="$REPO/tests/e2e"

declare -a SUMMARY=()
FAILED=0

log() { printf 'peers: %s\n' "$*" >&2; }
ok() { SUMMARY+=("ok      $1"); }
fail() { SUMMARY+=("FAILED  $1"); FAILED=1; }

# --- apt packages ------------------------------------------------------------------------

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

APT_UPDATED=0
apt_install() {
    local missing=()
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq </dev/null || return 1
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >/dev/null
}

have_systemd() { [ -d /run/systemd/system ]; }

# Stop and disable a system service so that only the tests' own instances run.
stop_system_service() {
    local name=$1
    if have_systemd; then
        $SUDO systemctl disable --now "$name.service" >/dev/null 2>&1 || true
        $SUDO systemctl disable --now "$name.socket" >/dev/null 2>&1 || true
    else
        if [ -x "/etc/init.d/$name" ]; then
            $SUDO "/etc/init.d/$name" stop </dev/null >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null; then
            $SUDO update-rc.d "$name" disable >/dev/null 2>&1 || true
        fi
    fi
}

# True when something listens on the TCP port on any local address.
port_listening() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# --- aiosmtpd ----------------------------------------------------------------------------

aiosmtpd_version() {
    "$PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null
}

if [ "$(aiosmtpd_version)" != "1.4.6" ]; then
    log "pip install aiosmtpd==1.4.6 for $(command -v "$PYTHON")"
    "$PYTHON" -m pip install -q --disable-pip-version-check aiosmtpd==1.4.6 </dev/null >&2
fi
if [ "$(aiosmtpd_version)" = "1.4.6" ]; then
    ok "aiosmtpd 1.4.6 for $("$PYTHON" -c 'import sys; print(sys.executable)')"
else
    fail "aiosmtpd 1.4.6 (pip install aiosmtpd==1.4.6)"
fi

# --- Postfix (smtp-sink, smtp-source) ----------------------------------------------------

# One apt transaction for everything missing: Postfix answers its debconf question with
# "No configuration" (we want only its binaries); swaks needs Net::SSLeay for --tls.
if ! pkg_installed postfix; then
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
fi
apt_install postfix dovecot-core dovecot-imapd swaks libnet-ssleay-perl openssl \
    || log "apt-get install failed"

if pkg_installed postfix; then
    stop_system_service postfix
    # "No configuration" normally leaves nothing running; stop a master that an
    # earlier configuration may have started.
    if [ -f /etc/postfix/main.cf ] && $SUDO postfix status >/dev/null 2>&1; then
        $SUDO postfix stop >/dev/null 2>&1 || true
    fi
fi
if [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; then
    if port_listening 25; then
        fail "postfix: something still listens on port 25"
    else
        ok "postfix $(dpkg-query -W -f='${Version}' postfix): /usr/sbin/smtp-sink /usr/sbin/smtp-source (no daemon running)"
    fi
else
    fail "postfix (smtp-sink/smtp-source)"
fi

# --- Dovecot -----------------------------------------------------------------------------

if pkg_installed dovecot-core; then
    stop_system_service dovecot
fi
if [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ]; then
    if port_listening 143 || port_listening 993; then
        fail "dovecot: a system instance still listens on 143/993"
    else
        ok "dovecot $(/usr/sbin/dovecot --version | cut -d' ' -f1): /usr/sbin/dovecot (system service stopped)"
    fi
else
    fail "dovecot (dovecot-core dovecot-imapd)"
fi

# --- swaks -------------------------------------------------------------------------------

if command -v swaks >/dev/null && swaks --support 2>&1 | grep -q '=== TLS supported'; then
    ok "swaks $(swaks --version 2>/dev/null | head -n1 | grep -o '[0-9][0-9.]*' | head -n1): $(command -v swaks)"
else
    fail "swaks (with TLS support)"
fi

# --- PostgreSQL 15 -----------------------------------------------------------------------

pg_running() {
    pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" \
        '$1 == v && $2 == c && $4 ~ /^online/ { found = 1 } END { exit !found }'
}

pg_ok=0
if command -v pg_ctlcluster >/dev/null && [ -d "/usr/lib/postgresql/$PG_VERSION" ]; then
    if ! pg_running; then
        log "pg_ctlcluster $PG_VERSION $PG_CLUSTER start"
        $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start </dev/null >&2 || true
    fi
    if pg_running; then
        # Create the role once; on later runs make sure its password and rights still hold.
        $SUDO runuser -u postgres -- psql -q -X -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cartero') THEN
        CREATE ROLE cartero WITH LOGIN CREATEDB SUPERUSER PASSWORD 'cartero';
    ELSE
        ALTER ROLE cartero WITH LOGIN CREATEDB SUPERUSER PASSWORD 'cartero';
    END IF;
END
$$;
SQL
        if PGPASSWORD=cartero PGCONNECT_TIMEOUT=5 psql -q -X -tA "$PG_URL" -c 'SELECT 1' </dev/null >/dev/null 2>&1; then
            pg_ok=1
        fi
    fi
fi
if [ "$pg_ok" -eq 1 ]; then
    ok "postgresql $PG_VERSION: $PG_URL"
else
    fail "postgresql $PG_VERSION (cluster $PG_CLUSTER on 127.0.0.1:5432, role cartero)"
fi

# --- browser end-to-end tests: chromium and tests/e2e/node_modules ----------------------

apt_install chromium || log "apt-get install chromium failed"
if [ -x /usr/bin/chromium ]; then
    # The Debian wrapper script may complain on stderr about /dev/shm; the version is on stdout.
    ok "$(/usr/bin/chromium --version 2>/dev/null | head -n1): /usr/bin/chromium"
else
    fail "chromium (apt-get install chromium)"
fi

node_major() {
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null
}

# `npm ci` when node_modules is missing or package-lock.json changed since the last install
# (its hash is kept in node_modules/.cartero-lock.sha256).
E2E_STAMP="$E2E_DIR/node_modules/.cartero-lock.sha256"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    fail "node >= 20 and npm (for tests/e2e)"
elif [ "$(node_major)" -lt 20 ]; then
    fail "node >= 20 for tests/e2e (found $(node --version))"
else
    lock_hash=$(sha256sum "$E2E_DIR/package-lock.json" | cut -d' ' -f1)
    if [ ! -d "$E2E_DIR/node_modules" ] || [ "$(cat "$E2E_STAMP" 2>/dev/null)" != "$lock_hash" ]; then
        log "npm ci in tests/e2e"
        if (cd "$E2E_DIR" && npm ci --no-audit --no-fund </dev/null >&2); then
            echo "$lock_hash" >"$E2E_STAMP"
        else
            log "npm ci failed"
        fi
    fi
    pw_version=$(cd "$E2E_DIR" && node -p 'require("playwright-core/package.json").version' 2>/dev/null)
    if [ -n "$pw_version" ] && [ "$(cat "$E2E_STAMP" 2>/dev/null)" = "$lock_hash" ]; then
        ok "playwright-core $pw_version (node $(node --version)): tests/e2e/node_modules"
    else
        fail "tests/e2e npm packages (cd tests/e2e && npm ci)"
    fi
fi

# --- summary -----------------------------------------------------------------------------

echo "test peers:"
for line in "${SUMMARY[@]}"; do
    echo "  $line"
done
if [ "$pg_ok" -eq 1 ]; then
    echo "DATABASE_URL=$PG_URL"
fi
exit "$FAILED"
