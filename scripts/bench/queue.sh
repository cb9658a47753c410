#!/usr/bin/env bash
# The submission queue under an app: gemm with more tiles than invocation slots, so that tiles
# wait in the client's queue and go out as slots free (posted when the rank next enters rfaas or
# MPI: between the slabs of its own rows, then in its Waitall). One rank pinned to core 0, core 1
# leased through the broker as in apps.sh; a sweep of slot counts against the same run with a
# slot per tile (the queue never fills: what the app does by default), and `mpirun -np 2`
# without rfaas, all measured in this run. --share 0.5 (no calibration: the same tiles in every
# run of the sweep).
#   scripts/bench/queue.sh     N=2048 TILE=64 SLOTS="1 2 4 8" REPEATS=5 PROVIDERS="shm tcp"
# Prints and appends to $OUT (default build/bench/queue.jsonl) one line per provider and slots:
#   {"bench":"queue","app":"gemm","size":2048,"provider":"shm","tile":64,"tiles":16,"slots":1,
#    "rfaas_s":..,"one_slot_per_tile_s":..,"mpi2_s":..,"of_no_queue":..,"of_ideal":..,"commit":..}
# of_no_queue = one_slot_per_tile_s / rfaas_s. Draws docs/img/queue-gemm.png.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
b="$root/build"
[ -x "$b/apps/gemm" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "queue.sh: needs 2 cores" >&2; exit 1; }
out=${OUT:-$b/bench/queue.jsonl}
mkdir -p "$(dirname "$out")"
n=${N:-2048}
tile=${TILE:-64}
repeats=${REPEATS:-5}
slots_list=${SLOTS:-1 2 4 8}
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
export OPENBLAS_NUM_THREADS=1
mpirun=(mpirun --allow-run-as-root -x OPENBLAS_NUM_THREADS)
alone="${mpirun[*]} --bind-to core --cpu-set 0 -np 1"
two="${mpirun[*]} --bind-to core -np 2"
for provider in ${PROVIDERS:-shm tcp}; do
  raw=$(mktemp /tmp/rfaas-queue.XXXXXX.jsonl)
  RFAAS_OFI_PROVIDER=$provider "$root/scripts/local-cluster.sh" --cores 1 --timeout 1800 -- bash -c "
    set -e
    $two '$b/apps/gemm' --n $n --repeats $repeats --mode local --json-out '$raw' >/dev/null
    $alone '$b/apps/gemm' --n $n --tile $tile --share 0.5 --repeats $repeats --json-out '$raw' >/dev/null
    for s in $slots_list; do
      $alone '$b/apps/gemm' --n $n --tile $tile --share 0.5 --slots \$s --repeats $repeats --json-out '$raw' >/dev/null
    done
  "
  python3 - "$raw" "$provider" "$commit" <<'PY' | tee -a "$out"
import json, sys
raw, provider, commit = sys.argv[1:]
runs = [json.loads(l) for l in open(raw) if l.strip()]
mpi2 = next(r for r in runs if r["mode"] == "local")
rf = [r for r in runs if r["mode"] == "rfaas"]
free, sweep = rf[0], rf[1:]  # the first: a slot per tile
for r in [free] + sweep:
    if not r["pass"]:
        sys.exit(f"queue.sh: gemm did not verify with {r['slots']} slots")
for r in sweep:
    print(json.dumps({"bench": "queue", "app": "gemm", "size": r["n"], "provider": provider, "tile": r["tile"],
                      "tiles": r["tiles"], "slots": r["slots"], "rfaas_s": r["rfaas_s"],
                      "one_slot_per_tile_s": free["rfaas_s"], "one_slot_per_tile_slots": free["slots"],
                      "mpi2_s": mpi2["local_s"], "local_s": r["local_s"],
                      "of_no_queue": round(free["rfaas_s"] / r["rfaas_s"], 4),
                      "of_ideal": round(mpi2["local_s"] / r["rfaas_s"], 4), "repeats": r["repeats"],
                      "pages": r.get("pages"), "commit": commit}))
PY
  rm -f "$raw"
done
echo "JSON lines appended to $out"

# The plot: ms per product against slots, beside a slot per tile and mpirun -np 2 (latest run).
command -v gnuplot >/dev/null || { echo "queue.sh: no gnuplot (scripts/bench/plot.sh installs it)"; exit 0; }
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
python3 - "$out" "$data" <<'PY'
import json, os, sys
out, data = sys.argv[1:]
last = {}
for l in open(out):
    r = json.loads(l)
    if r.get("bench") == "queue":
        last[(r["provider"], r["slots"])] = r
for prov in sorted({k[0] for k in last}):
    with open(os.path.join(data, f"{prov}.dat"), "w") as f:
        for (p, s), r in sorted(last.items()):
            if p == prov:
                f.write(f"{s} {1e3 * r['rfaas_s']:.6g} {1e3 * r['one_slot_per_tile_s']:.6g} {1e3 * r['mpi2_s']:.6g} "
                        f"{1e3 * r['local_s']:.6g}\n")
PY
clauses=""
for f in "$data"/*.dat; do
  [ -s "$f" ] || continue
  prov=$(basename "$f" .dat)
  dash=1; [ "$prov" = tcp ] && dash=2
  clauses+="${clauses:+, }'$f' u 1:2 w lp lw 2 dt $dash lc rgb '#d62728' t 'rfaas, slots as on the x axis ($prov)', "
  clauses+="'$f' u 1:3 w l lw 2 dt $dash lc rgb '#ff9896' t 'rfaas, a slot per tile ($prov)', "
  clauses+="'$f' u 1:4 w l lw 2 dt $dash lc rgb '#1f77b4' t 'mpirun -np 2, no rfaas ($prov)', "
  clauses+="'$f' u 1:5 w l lw 2 dt $dash lc rgb '#888888' t 'rank alone ($prov)'"
done
[ -n "$clauses" ] || exit 0
mkdir -p "$root/docs/img"
gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "$root/docs/img/queue-gemm.png"
set title "DGEMM N = $n, tiles of $tile rows, more tiles than slots: ms per product (lower is better; $commit)"
set xlabel "invocation slots on the leased core"
set ylabel "ms per product"
set grid
set logscale x 2
set yrange [0:*]
set key bottom left
plot $clauses
GP
echo "queue.sh: docs/img/queue-gemm.png"
