#!/usr/bin/env python3
"""Puts the three runs of an app side by side: the rank alone (all-local), the rank with its
leased core(s) (rfaas), and `mpirun -np 2` without rfaas. Reads the JSON lines the apps append
with --json-out (the rfaas run carries the all-local figure measured in the same process). The
rfaas figure is shown twice: steady state (the median solve) and end to end (one solve with
everything the job paid before it: lease, deploy, regions, registrations, puts, calibration).

  apps-report.py FILE            the summary for people (the quickstart)
  apps-report.py --bench FILE [PROVIDER [PLACEMENT]]
                                 one {"bench":"apps",...} line per app and size (scripts/bench/apps.sh);
                                 PLACEMENT: one_node (default) or across_nodes
"""
import json
import sys


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            key = (r["app"], r["n"])
            runs.setdefault(key, {})[r["mode"]] = r
    return runs


def figures(rf, loc):
    local_s, rfaas_s, mpi2_s = rf["local_s"], rf["rfaas_s"], loc["local_s"]
    return local_s, rfaas_s, mpi2_s, local_s / rfaas_s, mpi2_s / rfaas_s


def human(runs):
    for (app, n), modes in sorted(runs.items()):
        rf, loc = modes.get("rfaas"), modes.get("local")
        if not rf or not loc:
            print(f"{app} N={n}: incomplete (need an rfaas run and a --mode local run)")
            continue
        local_s, rfaas_s, mpi2_s, speedup, of_ideal = figures(rf, loc)
        if app == "jacobi":
            it = rf["iterations"]
            unit = lambda s: f"{1e3 * s / it:8.3f} ms/iteration"
            print(f"jacobi {n}x{n}, {it} iterations: 1 rank on core 0, 1 core leased through the broker")
        else:
            unit = lambda s: f"{2.0 * n ** 3 / s * 1e-9:8.2f} GFLOP/s ({1e3 * s:.1f} ms)"
            print(f"gemm N = {n}: 1 rank on core 0, 1 core leased through the broker")
        print(f"  rank alone (all-local)           : {unit(local_s)}")
        print(f"  rank + leased core (rfaas)       : {unit(rfaas_s)}   speed-up {speedup:.2f}x over all-local")
        e2e_s = rf["e2e_s"]
        parts = [f"lease and deploy {1e3 * rf['init_s']:.1f}",
                 f"regions{', registrations and B put' if app == 'gemm' else ' and registrations'} {1e3 * rf['regions_s']:.1f}"]
        if rf.get("calibration_s"):
            parts.append(f"calibration {1e3 * rf['calibration_s']:.1f}")
        print(f"    the same, end to end           : {unit(e2e_s)}   with the set-up it paid once: "
              f"{1e3 * rf['setup_s']:.1f} ms ({', '.join(parts)})")
        print(f"  mpirun -np {loc['ranks']} without rfaas       : {unit(mpi2_s)}   rfaas reaches {of_ideal:.2f} of it, "
              f"{mpi2_s / e2e_s:.2f} end to end")
        print(f"  memory: {'the same pages for every mode' if rf.get('pages') == loc.get('pages') else 'DIFFERENT pages'}"
              f" (THP {rf.get('pages', '?')}: the arrays on MADV_HUGEPAGE like the resident regions)")
        call, compute, executor = rf["call_us"], rf["compute_us"], rf["executor_compute_us"]
        print(f"  one offload call: {call:.0f} us round trip, {executor:.0f} us of it the computation on the leased "
              f"core (measured there; the rank's own: {compute:.0f} us), "
              f"{rf['transfer_bytes_per_call'] / 1024:.0f} KiB moved per call; first put of the resident data "
              f"{1e3 * rf['put_s']:.1f} ms")
        if "phase_own_s" in rf:
            print(f"  where the product's time goes (rank 0, measured per phase): its own {rf['rows'] - rf['rows_offloaded']} "
                  f"rows {1e3 * rf['phase_own_s']:.1f} ms at {rf['own_rows_per_s']:.0f} rows/s, posting "
                  f"{1e3 * rf['phase_post_s']:.1f} ms, progress between slabs {1e3 * rf['phase_test_s']:.1f} ms, "
                  f"waiting for the tiles after its rows {1e3 * rf['phase_wait_s']:.1f} ms; the leased core computed "
                  f"{1e3 * rf['phase_leased_s']:.1f} ms of its {rf['rows_offloaded']} rows at "
                  f"{rf['leased_rows_per_s']:.0f} rows/s")
        print(f"  verification against all-local: {'PASS' if rf['pass'] else 'FAIL'}")
        print()


def bench(runs, provider, placement):
    for (app, n), modes in sorted(runs.items()):
        rf, loc = modes.get("rfaas"), modes.get("local")
        if not rf or not loc:
            continue
        local_s, rfaas_s, mpi2_s, speedup, of_ideal = figures(rf, loc)
        line = {"bench": "apps", "app": app, "size": n, "provider": provider, "placement": placement,
                "local_s": local_s,
                "rfaas_s": rfaas_s, "mpi2_s": mpi2_s, "speedup": round(speedup, 4), "of_ideal": round(of_ideal, 4),
                "setup_s": rf["setup_s"], "init_s": rf["init_s"], "regions_s": rf["regions_s"],
                "calibration_s": rf.get("calibration_s", 0.0),
                "e2e_s": rf["e2e_s"], "of_ideal_e2e": round(mpi2_s / rf["e2e_s"], 4),
                "pages": rf.get("pages"),
                "call_us": rf["call_us"], "compute_us": rf["compute_us"],
                "executor_compute_us": rf["executor_compute_us"],
                "call_mean_us": rf["call_mean_us"],
                # the same calls' mean round trip beyond their mean time on the leased core, both
                # measured (not floored)
                "transfer_us": round(rf["call_mean_us"] - rf["executor_compute_us"], 2),
                "transfer_bytes_per_call": rf["transfer_bytes_per_call"], "put_s": rf["put_s"],
                "repeats": rf["repeats"], "pass": rf["pass"]}
        if app == "jacobi":
            line["iterations"] = rf["iterations"]
        for k in ("phase_post_s", "phase_own_s", "phase_test_s", "phase_wait_s", "phase_leased_s",
                  "leased_rows_per_s", "own_rows_per_s", "rows_offloaded", "rows"):
            if k in rf:
                line[k] = rf[k]
        print(json.dumps(line))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--bench":
        bench(load(args[1]), args[2] if len(args) > 2 else "shm", args[3] if len(args) > 3 else "one_node")
    elif args:
        human(load(args[0]))
    else:
        sys.exit(__doc__)
