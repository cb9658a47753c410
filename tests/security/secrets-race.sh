#!/usr/bin/env bash
# An ordinary local user races the start of local clusters: while scripts/local-cluster.sh
# (and with it scripts/munged.sh) starts and stops again and again, a user made for this test
# polls every cluster folder for the MUNGE key (a copy mints credentials for any uid, root
# included), the cluster secret, the journal and the daemons' logs. She must never read a byte.
#   tests/security/secrets-race.sh BUILD [STARTS]      (root: it makes the user)
set -euo pipefail
build=$(cd "${1:?usage: secrets-race.sh BUILD [STARTS]}" && pwd)
starts=${2:-100}
root=$(cd "$(dirname "$0")/../.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "secrets-race: skipped (needs root to make a user)"; exit 0; }

user=rfaas-race$$
useradd --no-create-home --user-group --shell /usr/sbin/nologin "$user"
loot=$(mktemp)
reader=""
cleanup() {
  [[ -n "$reader" ]] && kill -- -"$reader" 2>/dev/null || true
  wait 2>/dev/null || true
  userdel "$user" 2>/dev/null || true
  rm -f "$loot"
}
trap cleanup EXIT

# The reader: every readable byte of a secret, key, journal or log it finds goes to $loot
# (opened here, by root: she writes only to the descriptor she was given).
setsid setpriv --reuid="$user" --regid="$user" --clear-groups bash -c '
  while :; do
    for d in /tmp/rfaas-cluster.*; do
      for f in secret munge/munge.key munge/munged.log munge/munged.seed journal broker.log executord.log; do
        n=$(cat "$d/$f" 2>/dev/null | wc -c)
        [[ $n -gt 0 ]] && echo "$d/$f: $n bytes"
      done
    done
  done' >"$loot" 2>/dev/null &
reader=$!
sleep 0.2
kill -0 "$reader" || { echo "secrets-race: the reader did not start"; exit 1; }

t0=$(date +%s)
for i in $(seq "$starts"); do
  "$root/scripts/local-cluster.sh" --build "$build" --cores 0 --timeout 30 -- true >/dev/null
done
echo "secrets-race: $starts cluster starts in $(( $(date +%s) - t0 )) s against a reader as $user"
kill -- -"$reader" 2>/dev/null || true
wait "$reader" 2>/dev/null || true
reader=""
if [[ -s "$loot" ]]; then
  echo "secrets-race: FAIL: $user read what is not hers:"
  sort "$loot" | uniq -c | sort -rn | head -n 20
  exit 1
fi
echo "secrets-race: PASS: not one byte of a key, secret, journal or log was readable"
