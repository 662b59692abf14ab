#!/bin/bash
# Start or stop a private PostgreSQL 15 cluster for the test suite.
#
#   pg.sh start DIR PORT   initdb (if needed) into DIR, start the server listening on
#                          127.0.0.1:PORT only (unix socket in DIR), print its URL
#   pg.sh stop DIR         stop the server whose data lives in DIR
#
# The cluster is owned by the `postgres` system user (PostgreSQL refuses to run as
# root), uses trust authentication (it only listens on loopback and a private
# socket directory) and runs with fsync off: it holds throw-away test data only.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin

usage() {
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
}

ensure_installed() {
    if [ ! -x "$PGBIN/initdb" ]; then
        echo "PostgreSQL 15 not found in $PGBIN; installing the postgresql package" >&2
        apt-get install -y --no-install-recommends postgresql >&2
    fi
    if [ ! -x "$PGBIN/initdb" ]; then
        echo "error: $PGBIN/initdb still missing after installing postgresql" >&2
        exit 1
    fi
    if ! id postgres >/dev/null 2>&1; then
        echo "error: the postgres system user does not exist" >&2
        exit 1
    fi
}

# Run a command as the postgres user, from a directory it can read.
as_pg() {
    if [ "$(id -u)" = "0" ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

cmd=${1:-}
case "$cmd" in
start)
    [ $# -eq 3 ] || usage
    dir=$2
    port=$3
    case "$port" in ''|*[!0-9]*) echo "error: PORT must be a number" >&2; exit 2 ;; esac
    ensure_installed
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    data="$dir/data"
    if [ "$(id -u)" = "0" ]; then
        chown postgres: "$dir"
        # The postgres user must be able to reach DIR.
        p=$dir
        while [ "$p" != "/" ]; do
            p=$(dirname "$p")
            chmod o+x "$p" 2>/dev/null || true
        done
    fi
    if [ ! -s "$data/PG_VERSION" ]; then
        as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
    fi
    if as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "error: a server is already running from $data" >&2
        exit 1
    fi
    as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >/dev/null || {
        cat "$dir/server.log" >&2
        exit 1
    }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    [ $# -eq 2 ] || usage
    dir=$(cd "$2" && pwd)
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    usage
    ;;
esac
