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
# (opened here, by root: she writes only to the descriptor she was given). A tight loop, the
# key and the secret tried most often: their window, if there is one, is short.
setsid setpriv --reuid="$user" --regid="$user" --clear-groups /usr/bin/python3 -c '
import glob, os, sys
hot = ("secret", "munge/munge.key")
cold = ("munge/munged.log", "munge/munged.seed", "journal", "broker.log", "executord.log")
def grab(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        n = len(os.read(fd, 1 << 16))
    except OSError:
        n = 0
    os.close(fd)
    if n:
        print(f"{path}: {n} bytes", flush=True)
i = 0
while True:
    dirs = glob.glob("/tmp/rfaas-cluster.*")
    for _ in range(50):
        for d in dirs:
            for f in hot:
                grab(os.path.join(d, f))
    for d in dirs:
        for f in cold:
            grab(os.path.join(d, f))
' >"$loot" 2>/dev/null &
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
  sed 's/: .*//; s|/tmp/rfaas-cluster\.[^/]*/|CLUSTER/|' "$loot" | sort | uniq -c | sort -rn  # times read
  exit 1
fi
echo "secrets-race: PASS: not one byte of a key, secret, journal or log was readable"
