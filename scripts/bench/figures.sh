#!/usr/bin/env bash
# Every figure the README and docs/performance.md publish, made in one run by the Release build of
# the checked-out commit and stamped with it: the transport (fabric.sh), the invocation path
# (invoke.sh), MPI (mpi.sh), the lease broker beside sbatch (broker.sh), the apps on one node and
# across nodes (apps.sh), the submission queue (queue.sh), verbs in the Soft-RoCE guest
# (verbs-invoke.sh) and the main job (quickstart.sh, the README's expected output). Each bench's
# JSON lines and output go to docs/figures/NAME.{jsonl,txt} (replaced, so only this commit's
# lines are there) with NAME.stamp.json naming the build, the plots to docs/img/, and
# scripts/bench/figures-report.py writes the tables into docs/performance.md and the README, each
# table stamped with the build its own lines came from. Commit the result: the docs then state figures made by
# the build of their parent commit, which differs from it in docs only.
#   scripts/bench/figures.sh                           all (about 40 minutes on 2 cores; root for
#                                                      the cluster, Slurm and the guest)
#   FIGURES="apps queue quickstart" scripts/bench/figures.sh     some; the other blocks stay
# Refuses a tree with uncommitted changes to tracked files: a figure states the commit whose
# build made it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [[ -n "$(git status --porcelain --untracked-files=no)" && "${FIGURES_DIRTY_OK:-0}" != 1 ]]; then
  echo "figures.sh: uncommitted changes; commit first (figures are stamped with the commit)" >&2
  git status --short --untracked-files=no >&2
  exit 2
fi
commit=$(git describe --always --dirty --abbrev=7)
which=${FIGURES:-fabric invoke mpi broker apps queue verbs-invoke quickstart}
dir="$root/docs/figures"
mkdir -p "$dir"

"$root/scripts/install-deps.sh" >/dev/null
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)" >/dev/null

machine="$(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)"

stamp() {  # name: NAME.stamp.json says which build made NAME's figures, and each JSON line too
  python3 - "$dir/$1" "$commit" "$machine" <<'PY'
import datetime, json, os, sys
base, commit, machine = sys.argv[1:]
json.dump({"commit": commit, "date": datetime.date.today().isoformat(), "machine": machine},
          open(base + ".stamp.json", "w"))
if os.path.exists(base + ".jsonl"):
    rows = [json.loads(l) for l in open(base + ".jsonl") if l.strip().startswith("{")]
    with open(base + ".jsonl", "w") as f:
        for r in rows:
            r["commit"] = commit
            f.write(json.dumps(r) + "\n")
PY
}

run() {  # name command...: its output to NAME.txt; JSON lines left in NAME.jsonl by OUT or from stdout
  local name=$1; shift
  [[ " $which " == *" $name "* ]] || return 0
  echo "figures.sh: $name ($*)"
  rm -f "$dir/$name.jsonl" "$dir/$name.txt" "$dir/$name.stamp.json"
  local t0=$SECONDS
  OUT="$dir/$name.jsonl" "$@" >"$dir/$name.txt" 2>&1 ||
    { tail -n 30 "$dir/$name.txt" >&2; echo "figures.sh: $name failed" >&2; exit 1; }
  [[ -s "$dir/$name.jsonl" ]] || grep '^{"bench"' "$dir/$name.txt" >"$dir/$name.jsonl" || rm -f "$dir/$name.jsonl"
  stamp "$name"
  echo "figures.sh: $name done in $((SECONDS - t0)) s"
}

run fabric "$root/scripts/bench/fabric.sh"
run invoke "$root/scripts/bench/invoke.sh"
run mpi "$root/scripts/bench/mpi.sh"
run broker "$root/scripts/bench/broker.sh"
run apps env PLACEMENTS="one_node across_nodes" "$root/scripts/bench/apps.sh"
run queue "$root/scripts/bench/queue.sh"
run verbs-invoke "$root/scripts/bench/verbs-invoke.sh" "$root/build"
run quickstart "$root/scripts/quickstart.sh"
rm -f "$dir/quickstart.jsonl"

# The plots from these lines only.
BENCH_DIR="$dir" "$root/scripts/bench/plot.sh"
python3 "$root/scripts/bench/figures-report.py" "$dir"
echo "figures.sh: docs/figures/, docs/img/, docs/performance.md and README.md from the build of $commit"
