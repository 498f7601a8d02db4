#!/usr/bin/env bash
# Runs a separate, throw-away Postfix instance for the throughput benchmark: cartero is
# compared against Postfix relaying the same load to the same smtp-sink.
#
#   scripts/postfix-bench.sh start DIR LISTEN_PORT RELAY_PORT
#       Creates (if needed) and starts an instance whose files all live under DIR:
#       config DIR/etc, queue DIR/queue, data DIR/data, log DIR/maillog. smtpd listens on
#       127.0.0.1:LISTEN_PORT only and relays every message, whatever the recipient
#       domain, to [127.0.0.1]:RELAY_PORT. The queue is on disk and durable (Postfix
#       fsyncs each queue file before it answers 250). Prints READY once the port accepts
#       connections. If the instance already runs it is stopped and started again with
#       the given ports (start is idempotent).
#   scripts/postfix-bench.sh stop DIR
#       Stops that instance (no other Postfix) and waits until none of its processes is
#       left. Succeeds when it is not running.
#   scripts/postfix-bench.sh flush DIR
#       Asks its queue manager to retry deferred mail now.
#   scripts/postfix-bench.sh status DIR
#       Exit 0 and print the master PID when running, exit 1 otherwise.
#   scripts/postfix-bench.sh pids DIR
#       Print the PIDs of the instance's processes (master and its children), one a line.
#
# Environment: POSTFIX_BENCH_MAIN_CF, extra main.cf lines appended at start (for
# tuning experiments; later settings override earlier ones).
#
# Needs root (Postfix's master runs as root and drops to mail_owner=postfix). The system
# Postfix is neither used nor touched: no /etc/postfix/main.cf is needed or written.
# Nothing is looked up in DNS and nothing binds outside 127.0.0.1.
set -euo pipefail

PROG=postfix-bench
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
    cat >&2 <<'EOF'
usage: postfix-bench.sh start DIR LISTEN_PORT RELAY_PORT
       postfix-bench.sh stop DIR
       postfix-bench.sh flush DIR
       postfix-bench.sh status DIR
       postfix-bench.sh pids DIR
EOF
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "must run as root (Postfix's master needs it)"
command -v postfix >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
command -v postfix >/dev/null 2>&1 || die "postfix not installed (see scripts/peers.sh)"

# Absolute, symlink-free DIR: Postfix daemons chdir to the queue directory and we find
# the instance's processes by that cwd.
abs_dir() {
    local d=$1
    mkdir -p -- "$d"
    (cd -- "$d" && pwd -P)
}

valid_port() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

master_pid() { # DIR -> PID of a live master of that instance, or nothing
    local f=$1/queue/pid/master.pid pid
    [ -r "$f" ] || return 1
    pid=$(awk '{ print $1; exit }' "$f" 2>/dev/null) || return 1
    valid_pid "$pid" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name an unrelated process: it must be a Postfix master
    # working in this queue directory.
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$1/queue" ] || return 1
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in
    */master*) ;;
    *) return 1 ;;
    esac
    echo "$pid"
}

valid_pid() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
}

# Every live process of the instance: all Postfix daemons chdir to queue_directory, and
# the master leads its own process group (it calls setsid), so either criterion finds
# them.
instance_pids() { # DIR PGID-or-empty
    local dir=$1 pgid=${2:-}
    {
        find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$dir/queue" 2>/dev/null |
            cut -d/ -f3
        # Zombies do not count: once the master is gone its children are reaped by
        # PID 1, which here can take a second or two.
        if [ -n "$pgid" ]; then
            ps -e -o pid=,pgid=,stat= | awk -v g="$pgid" '$2 == g && $3 !~ /^Z/ { print $1 }'
        fi
    } | { grep -vx -e "$$" || true; } | sort -un
    return 0
}

port_open() { # PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Postfix start takes ~2 s longer right after main.cf changed, so an unchanged config
# keeps its old file (and mtime).
replace_if_changed() { # FILE (new content in FILE.tmp)
    if cmp -s "$1.tmp" "$1"; then
        rm -f "$1.tmp"
    else
        mv "$1.tmp" "$1"
    fi
}

write_config() { # DIR LISTEN_PORT RELAY_PORT
    local dir=$1 listen=$2 relay=$3
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    # The daemons run as user postfix after chdir()ing as root, but some open paths
    # under DIR later (data_directory): DIR must be searchable. mktemp -d makes 0700.
    chmod 0755 "$dir" "$dir/etc"
    # queue_directory must be owned by root (postfix check warns otherwise);
    # post-install creates its subdirectories with the right owners at start.
    chown root:root "$dir/queue"
    chmod 0755 "$dir/queue"
    chown postfix:root "$dir/data" 2>/dev/null || true
    chmod 0700 "$dir/data"
    # The master opens data_directory/master.lock with mail_owner's effective uid, so
    # every directory above DIR must be searchable by user postfix too (a parent made
    # by mktemp -d is 0700 and fails with "open lock file ...: Permission denied").
    if ! setpriv --reuid=postfix --regid=postfix --init-groups test -x "$dir/data" 2>/dev/null; then
        die "user postfix cannot reach $dir/data: make the directories above $dir searchable (chmod o+x)"
    fi

    cat >"$dir/etc/main.cf.tmp" <<EOF
# Generated by scripts/postfix-bench.sh: a benchmark relay, not a mail server.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop

# No syslog here: Postfix's own logger. The file must sit under a listed prefix.
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
syslog_name = postfix-bench

# Names fixed so that nothing asks DNS or the host name service.
myhostname = localhost.localdomain
mydomain = localdomain
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
smtp_address_preference = ipv4

# Relay everything to the sink; nothing is delivered locally.
relayhost = [127.0.0.1]:$relay
default_transport = smtp
relay_transport = relay
mydestination =
relay_domains =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
append_dot_mydomain = no
biff = no

# No TLS, no milters, no address verification, no content checks.
smtpd_tls_security_level = none
smtp_tls_security_level = none
lmtp_tls_security_level = none
smtpd_milters =
non_smtpd_milters =
milter_default_action = accept
header_checks =
body_checks =
smtpd_authorized_xforward_hosts =

# Throughput: accept as fast as the disk allows, deliver with enough parallel
# connections to the one destination (the sink). The queue stays durable: every
# queue file is fsync()ed before smtpd answers 250 (nothing here changes that).
in_flow_delay = 0
default_process_limit = 100
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions = \$mynetworks
# 20 parallel deliveries to the sink (which takes >15k msgs/s) are plenty; on 2 cores
# 10, 20 and 50 measured alike (~470-520 msgs/s), fewer processes cost less CPU.
default_destination_concurrency_limit = 20
smtp_destination_concurrency_limit = 20
relay_destination_concurrency_limit = 20
initial_destination_concurrency = 10
default_destination_rate_delay = 0
smtp_connection_cache_on_demand = yes
smtp_connection_cache_destinations = [127.0.0.1]:$relay
smtp_connection_reuse_count_limit = 0
qmgr_message_active_limit = 20000

# Retry quickly if the sink was not up yet, so a benchmark cannot stall for minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
smtp_connect_timeout = 5s
delay_warning_time = 0
EOF
    # Experiments: extra main.cf lines (later lines win), e.g.
    # POSTFIX_BENCH_MAIN_CF=$'default_destination_concurrency_limit = 20'
    if [ -n "${POSTFIX_BENCH_MAIN_CF:-}" ]; then
        printf '\n# From POSTFIX_BENCH_MAIN_CF\n%s\n' "$POSTFIX_BENCH_MAIN_CF" >>"$dir/etc/main.cf.tmp"
    fi
    replace_if_changed "$dir/etc/main.cf"

    # Minimal master.cf: only the services a relay needs, nothing chrooted (Debian's
    # master.cf chroots, and a plain "postfix start" does not populate a chroot).
    cat >"$dir/etc/master.cf.tmp" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$listen inet n - n - - smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
    replace_if_changed "$dir/etc/master.cf"
}

do_stop() { # DIR
    local dir=$1 pid pgid pids i
    pid=$(master_pid "$dir") || pid=
    pgid=$pid
    if [ -n "$pid" ]; then
        # Same as "postfix stop" (postfix-script sends SIGTERM to the master, which
        # passes it on to its process group) minus its 1-second polling steps.
        kill -TERM "$pid" 2>/dev/null || true
    fi
    # Children may outlive the master by a moment; wait for every process of the
    # instance, then force what is left.
    for i in $(seq 1 100); do
        pids=$(instance_pids "$dir" "$pgid")
        [ -z "$pids" ] && return 0
        [ "$i" -eq 50 ] && kill -TERM $pids 2>/dev/null || true
        sleep 0.1
    done
    pids=$(instance_pids "$dir" "$pgid")
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    sleep 0.2
    pids=$(instance_pids "$dir" "$pgid")
    [ -z "$pids" ] || die "processes of $dir survive: $pids"
}

do_start() { # DIR LISTEN_PORT RELAY_PORT
    local dir=$1 listen=$2 relay=$3 out i
    if master_pid "$dir" >/dev/null; then
        log "instance in $dir is running: restarting it"
    fi
    do_stop "$dir"
    write_config "$dir" "$listen" "$relay"
    : >>"$dir/maillog"
    if port_open "$listen"; then
        die "127.0.0.1:$listen is already in use by another program"
    fi
    # "postfix start" runs "postfix check" (post-install create-missing makes the queue
    # subdirectories with their owners and modes) and waits for the master to initialise.
    if ! out=$(postfix -c "$dir/etc" start 2>&1 </dev/null); then
        printf '%s\n' "$out" >&2
        tail -n 20 "$dir/maillog" >&2 2>/dev/null || true
        die "postfix start failed"
    fi
    for i in $(seq 1 200); do
        if port_open "$listen"; then
            echo READY
            return 0
        fi
        master_pid "$dir" >/dev/null || break
        sleep 0.05
    done
    tail -n 20 "$dir/maillog" >&2 2>/dev/null || true
    do_stop "$dir" || true
    die "127.0.0.1:$listen does not accept connections"
}

do_flush() { # DIR
    local dir=$1
    master_pid "$dir" >/dev/null || die "instance in $dir is not running"
    # postqueue is set-gid: for a non-root caller it accepts -c only for a directory
    # listed in the default main.cf's alternate_config_directories (there is no default
    # main.cf here). Root may use it; otherwise kick the queue manager directly:
    # D = scan deferred, F = forget dead destinations, A = ignore back-off (all).
    postqueue -c "$dir/etc" -f 2>/dev/null || postkick -c "$dir/etc" public qmgr DFA
}

cmd=${1:-}
case $cmd in
start)
    [ $# -eq 4 ] || usage
    valid_port "$3" || die "bad LISTEN_PORT: $3"
    valid_port "$4" || die "bad RELAY_PORT: $4"
    do_start "$(abs_dir "$2")" "$3" "$4"
    ;;
stop)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    do_stop "$(abs_dir "$2")"
    ;;
flush)
    [ $# -eq 2 ] || usage
    do_flush "$(abs_dir "$2")"
    ;;
status)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 1
    master_pid "$(abs_dir "$2")"
    ;;
pids)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    d=$(abs_dir "$2")
    instance_pids "$d" "$(master_pid "$d" || true)"
    ;;
*)
    usage
    ;;
esac
