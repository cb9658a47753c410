#!/usr/bin/env bash
# A munged of rfaas's own, for tests and one-machine clusters: its key, socket, log and pid file
# under DIR, so that it neither needs nor disturbs a munged the host may run. Users' requests to
# the lease broker are authenticated by it (RFAAS_MUNGE_SOCKET names its socket to clients,
# rfaas-ctl and the broker). On a cluster use the site's munged instead (one key on every node).
#
#   scripts/munged.sh start DIR   # prints RFAAS_MUNGE_SOCKET=DIR/munge.socket once it answers
#   scripts/munged.sh stop DIR
#
# As root munged runs as the munge user (the Debian package's; as root itself where there is
# none, e.g. in the Soft-RoCE guest), else as the caller. The socket's
# folder is world-searchable: every local user may ask munged for a credential, as with the
# system's /run/munge.
set -euo pipefail
# Everything this script and munged create is private from the start (the key above all: a
# copied key mints credentials for any uid, root's included); the socket's folder is opened
# to other users by name below, the key never.
umask 077
cmd=${1:?usage: munged.sh start|stop DIR}
dir=${2:?usage: munged.sh start|stop DIR}

if [[ "$cmd" == stop ]]; then
  if [[ -s "$dir/munged.pid" ]]; then
    pid=$(cat "$dir/munged.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/munged.pid"
  fi
  exit 0
fi
[[ "$cmd" == start ]] || { echo "munged.sh: unknown command $cmd" >&2; exit 2; }
command -v munged >/dev/null || [[ -x /usr/sbin/munged ]] || { echo "munged.sh: munged missing (run scripts/install-deps.sh)" >&2; exit 1; }
munged=$(command -v munged || echo /usr/sbin/munged)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
socket="$dir/munge.socket"
if [[ -S "$socket" && -s "$dir/munged.pid" ]] && kill -0 "$(cat "$dir/munged.pid")" 2>/dev/null; then
  echo "RFAAS_MUNGE_SOCKET=$socket"
  exit 0
fi
run=()
owner=$(id -u)
if [[ $(id -u) -eq 0 ]] && id munge >/dev/null 2>&1; then
  owner=munge
  run=(setpriv --reuid=munge --regid=munge --init-groups)
fi
# munged checks that nobody else can write its folders or read its key. The key is made in
# a private file (umask 077: mode 0600 from its first byte), then handed to munged's user.
chmod 755 "$dir"
[[ -s "$dir/munge.key" ]] || dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge.key"
chown "$owner" "$dir" "$dir/munge.key"
rm -f "$socket" "$socket.lock"
"${run[@]}" "$munged" --force --key-file="$dir/munge.key" --socket="$socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
for _ in $(seq 100); do
  if [[ -S "$socket" ]] && munge -n -S "$socket" 2>/dev/null | unmunge -S "$socket" >/dev/null 2>&1; then
    echo "RFAAS_MUNGE_SOCKET=$socket"
    exit 0
  fi
  sleep 0.05
done
echo "munged.sh: munged did not answer on $socket; log:" >&2
tail -n 20 "$dir/munged.log" >&2 || true
exit 1
