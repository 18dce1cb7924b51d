# Shell functions the roles' converge scripts share (included into each; POSIX sh). A role's whole convergence is one
# script run over SSH in one Ansible task: a module task costs ~0.45 s here, a raw one ~0.2 s.
# Each change prints a line "crane-changed: WHAT" (the task counts as changed when there is one); errors go to stderr.
set -eu
umask 022
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

changed() { echo "crane-changed: $*"; }

# put_file PATH MODE CONTENT: writes CONTENT when the file differs (atomically: a killed run leaves the old or the new
# file, never half of one); returns 0 when it wrote, 1 when the file was already so.
put_file() {
    if [ -f "$1" ] && printf '%s' "$3" | cmp -s - "$1" && [ "$(stat -c %a "$1")" = "${2#0}" ]; then
        return 1
    fi
    { mkdir -p "$(dirname "$1")" && printf '%s' "$3" > "$1.crane-tmp" && chmod "$2" "$1.crane-tmp" &&
      mv -f "$1.crane-tmp" "$1"; } || { echo "cannot write $1" >&2; exit 1; }
    changed "$1"
}

# running NAME: whether runsv supervises the service and it is up
running() {
    sv status "$SERVICES/$1" 2>/dev/null | grep -q '^run:'
}

# supervise NAME RESTART: makes sure runsv supervises $SERVICES/NAME (started detached, in its own session, so it
# outlives this SSH session; PID 1 reaps it), and restarts a running service when RESTART is 1.
supervise() {
    dir="$SERVICES/$1"
    if sv status "$dir" >/dev/null 2>&1; then
        if [ "$2" = 1 ]; then
            sv -w 30 restart "$dir" >/dev/null || { log_tail "$1"; echo "$1 did not restart" >&2; exit 1; }
            changed "restarted $1"
        elif ! running "$1"; then
            sv -w 30 up "$dir" >/dev/null || { log_tail "$1"; echo "$1 did not start" >&2; exit 1; }
            changed "started $1"
        fi
        return 0
    fi
    mkdir -p "$LOGS"
    rm -rf "$dir/supervise"  # what a runsv that is gone left (a restarted container, a killed run)
    setsid runsv "$dir" </dev/null >>"$LOGS/$1.log" 2>&1 &
    i=0
    until sv status "$dir" >/dev/null 2>&1; do  # runsv answers: it has started the service (the caller waits for it)
        i=$((i + 1))
        [ "$i" -lt 200 ] || { log_tail "$1"; echo "runsv did not start $1" >&2; exit 1; }
        sleep 0.05
    done
    changed "started $1"
}

# retire NAME: stops the service, lets its runsv go and removes $SERVICES/NAME; `sv exit` does not wait for runsv to
# leave, and a runsv still writing its supervise/ files makes a plain rm fail, so the removal is tried until it holds
retire() {
    dir="$SERVICES/$1"
    [ -d "$dir" ] || return 0
    sv -w 10 force-stop "$dir" >/dev/null 2>&1 || true
    sv exit "$dir" >/dev/null 2>&1 || true
    i=0
    until rm -rf "$dir" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 200 ] || { echo "cannot remove $dir: its runsv did not leave" >&2; exit 1; }
        sleep 0.05
    done
    changed "removed $1"
}

# log_tail NAME: the last lines the service printed (a crash loop's repeats once), to stderr: they say why it failed
log_tail() {
    [ -f "$LOGS/$1.log" ] && tail -n 20 "$LOGS/$1.log" | uniq | tail -n 4 >&2 || true
}

# wait_until SECONDS NAME WHAT COMMAND...: runs COMMAND until it succeeds; otherwise says so with NAME's log
wait_until() {
    limit=$(($1 * 20)); name=$2; what=$3; shift 3; i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -ge "$limit" ]; then
            log_tail "$name"
            echo "$what did not answer within $((limit / 20)) s" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# http_ok URL: the URL answers 200
http_ok() {
    python3 -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=1).status != 200)' "$1"
}

# tcp_open ADDRESS PORT: something accepts connections there
tcp_open() {
    python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()' "$1" "$2"
}

# identifier WHAT VALUE: refuses a name that is not a plain SQL identifier (it is written into SQL and config)
identifier() {
    case "$2" in
        ''|[!a-z_]*|*[!a-z0-9_]*) echo "$1 '$2' must be lowercase letters, digits and underscores" >&2; exit 2 ;;
    esac
}
