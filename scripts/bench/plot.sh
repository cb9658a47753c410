#!/usr/bin/env bash
# Draws the PNG plots docs/performance.md shows from the benchmarks' JSON lines (gnuplot, from
# Debian's packages, installed here if missing). The latest line per point wins.
#   docs/img/apps-jacobi.png   ms per iteration vs grid size: all-local, rfaas, mpirun -np 2
#   docs/img/apps-gemm.png     GFLOP/s vs N: the same three
#   docs/img/invoke-rtt.png    hot invocation round trip vs payload: raw transport vs rfaas
# Inputs: build/bench/apps.jsonl (apps.sh), build/bench/invoke.jsonl (invoke.sh) and, when
# present, build/bench/verbs-invoke.jsonl (the Soft-RoCE guest).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH_DIR:-$root/build/bench}
img=${IMG_DIR:-$root/docs/img}
mkdir -p "$img"
if ! command -v gnuplot >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q gnuplot-nox >/dev/null ||
    { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q gnuplot-nox >/dev/null; }
fi
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
python3 - "$bench" "$data" <<'PY'
import json, os, sys
bench, data = sys.argv[1], sys.argv[2]
def lines(name):
    p = os.path.join(bench, name)
    if not os.path.exists(p):
        return []
    out = []
    for l in open(p):
        l = l.strip()
        if l.startswith("{"):
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
    return out
apps = {}
commits = set()
for r in lines("apps.jsonl"):
    if r.get("bench") == "apps":
        apps[(r["app"], r["provider"], r.get("placement", "one_node"), r["size"])] = r
        commits.add(r.get("commit", "?"))
# The build the plot's points came from, for its title.
with open(os.path.join(data, "apps.commit"), "w") as f:
    f.write(", ".join(sorted(commits)))
for app in ("jacobi", "gemm"):
    for prov, place in sorted({(k[1], k[2]) for k in apps if k[0] == app}):
        pts = sorted((k[3], v) for k, v in apps.items() if k[0] == app and k[1] == prov and k[2] == place)
        with open(os.path.join(data, f"{app}-{prov}-{place}.dat"), "w") as f:
            for n, r in pts:
                if app == "jacobi":
                    it = r.get("iterations", 500)
                    vals = [1e3 * r[k] / it for k in ("local_s", "rfaas_s", "mpi2_s")]
                else:
                    vals = [2.0 * n ** 3 / r[k] * 1e-9 for k in ("local_s", "rfaas_s", "mpi2_s")]
                f.write(f"{n} {vals[0]:.6g} {vals[1]:.6g} {vals[2]:.6g}\n")
rtt = {}
commits = set()
for name in ("invoke.jsonl", "verbs-invoke.jsonl"):
    for r in lines(name):
        if r.get("metric") == "hot_rtt_us":
            rtt[(r["provider"], r["size"])] = r
            commits.add(r.get("commit", "?"))
with open(os.path.join(data, "rtt.commit"), "w") as f:
    f.write(", ".join(sorted(commits)))
for prov in sorted({k[0] for k in rtt}):
    with open(os.path.join(data, f"rtt-{prov}.dat"), "w") as f:
        for (p, size), r in sorted(rtt.items(), key=lambda kv: kv[0][1]):
            if p == prov:
                f.write(f"{size} {r['raw_median']:.6g} {r['echo_median']:.6g}\n")
PY
plot() {  # output, title, xlabel, ylabel, log-x?, plot commands
  gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "$1"
set title "$2"
set xlabel "$3"
set ylabel "$4"
set grid
set key top left
$5
plot $6
GP
}
series() {  # app: plot clauses for the providers and placements measured
  local app=$1 clauses="" f name prov place dash two
  for f in "$data/$app"-*.dat; do
    [ -s "$f" ] || continue
    name=$(basename "$f" .dat); name=${name#"$app"-}
    prov=${name%%-*}; place=${name#*-}
    dash=1; [ "$prov" = tcp ] && dash=2; [ "$place" = across_nodes ] && dash=4
    two="mpirun -np 2"; [ "$place" = across_nodes ] && two="srun -N 2"
    place=${place/_/ }
    clauses+="${clauses:+, }'$f' u 1:2 w lp lw 2 dt $dash lc rgb '#888888' t 'rank alone ($prov, $place)', "
    clauses+="'$f' u 1:3 w lp lw 2 dt $dash lc rgb '#d62728' t 'rank + 1 leased core, rfaas ($prov, $place)', "
    clauses+="'$f' u 1:4 w lp lw 2 dt $dash lc rgb '#1f77b4' t '$two, no rfaas ($prov, $place)'"
  done
  echo "$clauses"
}
built() { if [ -s "$data/$1.commit" ]; then echo " (build $(cat "$data/$1.commit"))"; fi; }
drawn=0
if s=$(series jacobi) && [ -n "$s" ]; then
  plot "$img/apps-jacobi.png" "Jacobi, 500 iterations: time per iteration (lower is better)$(built apps)" "grid points per side" \
    "ms per iteration" "set logscale xy; set xtics (512,1024,2048); set xrange [400:2600]" "$s"
  drawn=$((drawn + 1))
fi
if s=$(series gemm) && [ -n "$s" ]; then
  plot "$img/apps-gemm.png" "DGEMM C = A*B: GFLOP/s (higher is better)$(built apps)" "N" "GFLOP/s" \
    "set logscale x; set xtics (512,1024,2048); set xrange [400:2600]; set yrange [0:*]; set key bottom right" "$s"
  drawn=$((drawn + 1))
fi
clauses=""
colors=(1f77b4 d62728 2ca02c)
i=0
for f in "$data"/rtt-*.dat; do
  [ -s "$f" ] || continue
  prov=$(basename "$f" .dat); prov=${prov#rtt-}
  c=${colors[$((i % 3))]}; i=$((i + 1))
  clauses+="${clauses:+, }'$f' u 1:2 w lp lw 2 dt 2 lc rgb '#$c' t 'raw $prov', '$f' u 1:3 w lp lw 2 dt 1 lc rgb '#$c' t 'rfaas $prov'"
done
if [ -n "$clauses" ]; then
  plot "$img/invoke-rtt.png" "Hot invocation round trip vs payload: raw transport (4 KiB-page buffers) vs rfaas (medians)$(built rtt)" "payload bytes" \
    "round trip (us)" "set logscale xy; set xrange [4:2e6]; set format x '%.0s%cB'" "$clauses"
  drawn=$((drawn + 1))
fi
echo "plot.sh: $drawn plot(s) in $img"
