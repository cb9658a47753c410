#!/usr/bin/env bash
# Before and after: the same benchmark on the Release builds of two commits, on this machine, in
# alternating pairs (so that the host's drift falls on both sides alike), and the median of each
# side's figure with its quartiles. For "is the change no worse than the noise".
#   scripts/bench/ab.sh BEFORE AFTER BENCH [PAIRS]     (PAIRS default 5)
# BENCH:
#   hot     rfaas-bench invoke --provider shm --hot-only, 64 B: echo / raw write round trip
#   verbs   scripts/bench/verbs-invoke.sh, one guest boot of 3 runs, 64 B: echo / raw (root)
#   apps    scripts/bench/apps.sh over tcp, gemm and jacobi 2048, one node and across nodes
#           (root for the namespace cluster): rfaas / `mpirun -np 2` (or `srun -N 2`) time
# Each commit is checked out and built once in $AB_DIR/<commit> (default /tmp/rfaas-ab); every
# run's JSON lines go to $AB_DIR/<bench>-<before|after>.jsonl, and each side runs its own scripts.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
before=$(git -C "$root" rev-parse --short "$1") after=$(git -C "$root" rev-parse --short "$2") bench=$3
pairs=${4:-5}
dir=${AB_DIR:-/tmp/rfaas-ab}
mkdir -p "$dir"
case $bench in hot | verbs | apps) ;; *) echo "ab.sh: BENCH is hot, verbs or apps" >&2; exit 2 ;; esac

tree_of() {  # a worktree of the commit, built (Release), once
  local c=$1 t="$dir/$1"
  if [ ! -d "$t" ]; then git -C "$root" worktree add --detach "$t" "$c" >/dev/null; fi
  if [ ! -x "$t/build/scripts/bench/rfaas-bench" ]; then
    echo "ab.sh: building $c in $t/build" >&2
    (cd "$t" && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >"$dir/$c.configure.log" 2>&1 &&
      cmake --build build -j "$(nproc)" >"$dir/$c.build.log" 2>&1) ||
      { echo "ab.sh: the build of $c failed: $dir/$c.build.log" >&2; exit 1; }
  fi
  echo "$t"
}

run_one() {  # side tree
  local side=$1 t=$2 out="$dir/$bench-$1.jsonl"
  case $bench in
    hot) "$t/build/scripts/bench/rfaas-bench" invoke --provider shm --hot-only --repeats 9 --sizes 64 --json "$out" ;;
    verbs) BOOTS=1 RUNS=3 SIZES=64 OUT=$out "$t/scripts/bench/verbs-invoke.sh" "$t/build" ;;
    apps) (cd "$t" && OUT=$out PROVIDERS=tcp GEMM_SIZES=2048 JACOBI_SIZES=2048 REPEATS=3 ./scripts/bench/apps.sh) ;;
  esac
}

tb=$(tree_of "$before")
ta=$(tree_of "$after")
rm -f "$dir/$bench-before.jsonl" "$dir/$bench-after.jsonl"
for ((p = 1; p <= pairs; ++p)); do
  # Alternate which side goes first, so neither always runs on the warmer machine.
  if ((p % 2)); then order="before after"; else order="after before"; fi
  for side in $order; do
    t=$tb
    [ "$side" = after ] && t=$ta
    echo "=== pair $p of $pairs: $side" >&2
    run_one "$side" "$t" >"$dir/$bench-$side-$p.log" 2>&1 || echo "ab.sh: pair $p $side failed ($dir/$bench-$side-$p.log)" >&2
  done
done

python3 - "$dir" "$bench" "$before" "$after" <<'EOF'
import json, statistics as st, sys
d, bench, before, after = sys.argv[1:]
def rows(side):
    try:
        return [json.loads(l) for l in open(f"{d}/{bench}-{side}.jsonl") if l.startswith("{")]
    except FileNotFoundError:
        return []
def show(label, values):
    if not values:
        return "no runs"
    q = st.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{st.median(values):.3f} (q1-q3 {q[0]:.3f}-{q[2]:.3f}, n={len(values)})"
if bench in ("hot", "verbs"):
    groups = {"64 B echo / raw": lambda r: r.get("ratio") if r.get("size") == 64 else None,
              "64 B echo, us": lambda r: r.get("echo_median") if r.get("size") == 64 else None}
else:
    groups = {}
    for pl in ("one_node", "across_nodes"):
        for app in ("gemm", "jacobi"):
            groups[f"{app} 2048 {pl}: mpi / rfaas time"] = (lambda pl, app: lambda r: r.get("of_ideal")
                if r.get("placement") == pl and r.get("app") == app else None)(pl, app)
print(f"\n=== ab.sh {bench}: before {before}, after {after}; medians over runs (alternating pairs)")
for name, pick in groups.items():
    b = [v for v in map(pick, rows("before")) if v is not None]
    a = [v for v in map(pick, rows("after")) if v is not None]
    print(f"{name:40s} before {show(name, b):38s} after {show(name, a)}")
EOF
