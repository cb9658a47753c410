#!/usr/bin/env python3
"""Writes the figures of one scripts/bench/figures.sh run into the docs: each table of
docs/performance.md between its markers (<!-- figures:NAME --> ... <!-- /figures:NAME -->) and the
README's expected quickstart output, every block stamped with the commit whose build made it.
Only what the run measured is replaced; a block whose bench was not run is left as it is.

  figures-report.py FIGURES_DIR
FIGURES_DIR holds NAME.jsonl and NAME.txt per bench and NAME.stamp.json ({"commit", "date",
"machine"}) for each, written by the run that made them: a block says the build its own lines
came from, whichever run wrote the others.
"""
import json
import os
import re
import sys


def size(b):
    b = int(b)
    for unit, n in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= n and b % n == 0:
            return f"{b // n} {unit}"
    return f"{b} B"


def lines(d, name):
    p = os.path.join(d, name + ".jsonl")
    if not os.path.exists(p):
        return None
    return [json.loads(l) for l in open(p) if l.strip().startswith("{")]


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def f(x, digits=3):
    return f"{x:.{digits}f}"


def fabric(rs):
    rows = []
    for r in rs:
        if r.get("metric") == "rtt_us":
            rows.append([r["provider"], size(r["size"]), f(r["raw_median"]), f(r["raw_p99"]), f(r["rfaas_median"]),
                         f(r["rfaas_p99"]), f(r["ratio"])])
        elif r.get("metric") == "stream_gbps":
            rows.append([r["provider"], f"{size(r['size'])} stream (GB/s)", f(r["raw_median"], 2), "",
                         f(r["rfaas_median"], 2), "", f(r["ratio"])])
    return "Round trip in microseconds:\n\n" + table(
        ["provider", "size", "raw median", "raw p99", "rfaas median", "rfaas p99", "ratio"], rows)


def invoke(rs):
    hot = [[r["provider"], size(r["size"]), f(r["raw_median"]), f(r["echo_median"]), f"{r['diff']:+.3f}",
            f(r["ratio"]), f(r["noop_median"])] for r in rs if r.get("metric") == "hot_rtt_us"]
    out = "Hot round trip in microseconds (medians of per-repeat medians):\n\n" + table(
        ["provider", "size", "raw", "echo", "echo − raw", "echo / raw", "noop"], hot)
    bw = [[r["provider"], size(r["size"]), f(r["raw"], 2), f(r["put"], 2), f(r["invoke"], 2), f(r["put_ratio"]),
           f(r["invoke_ratio"])] for r in rs if r.get("metric") == "bandwidth_gbps"]
    if bw:
        out += "\n\nBandwidth in GB/s:\n\n" + table(
            ["provider", "size", "raw stream", "put", "invoke", "put / raw", "invoke / raw"], bw)
    cold = [[r["provider"], f(r["cached_total"], 1), f(r["connect"], 1), f(r["executor_start"], 1),
             f(r["endpoints"], 1), f(r["first_invocation"], 2), f(r["uncached_total"], 1)]
            for r in rs if r.get("metric") == "cold_start_ms"]
    if cold:
        out += "\n\nCold start in milliseconds:\n\n" + table(
            ["provider", "total (library cached)", "connect", "executor start", "endpoints", "first invocation",
             "total (library not cached)"], cold)
    return out


def mpi(rs):
    rows = [[r["provider"], size(r["size"]), f(r["raw_us"]), f(r["offload_us"]), f(r["offload_us"] / r["raw_us"]),
             f(r["ioffload_wait_us"]), f(r["ioffload_wait_us"] / r["raw_us"])] for r in rs]
    return "Round trip in microseconds:\n\n" + table(
        ["provider", "size", "raw", "rfaas_offload", "/ raw", "rfaas_ioffload + MPI_Wait", "/ raw"], rows)


def broker(rs, txt):
    rows = [[r["nodes"], r["clients"], f"{r['pairs_per_s']:.0f}", f(r["p50_us"], 1), f(r["p99_us"], 1)]
            for r in rs if r.get("bench") == "broker"]
    out = "Lease + release pairs:\n\n" + table(["nodes", "clients", "pairs/s", "p50 us", "p99 us"], rows)
    slurm = [l for l in txt.splitlines() if l.startswith("slurm:")]
    if slurm:
        out += "\n\nBeside it, from the same run: `" + slurm[0] + "`"
    return out


def apps(rs):
    rows = []
    for r in sorted(rs, key=lambda r: (r["placement"], r["provider"], r["app"], r["size"])):
        unit = (lambda s: f"{1e3 * s / r['iterations']:.3f} ms/it") if r["app"] == "jacobi" else \
               (lambda s: f"{2.0 * r['size'] ** 3 / s * 1e-9:.2f} GFLOP/s")
        rows.append([r["app"], r["size"], r["placement"].replace("_", " "), r["provider"], unit(r["local_s"]),
                     unit(r["rfaas_s"]), unit(r["mpi2_s"]), f(r["speedup"], 2), f"**{r['of_ideal']:.2f}**",
                     f(r["of_ideal_e2e"], 2),
                     f"{1e3 * r['init_s']:.0f} / {1e3 * r['regions_s']:.0f} / {1e3 * r['calibration_s']:.0f}",
                     f"{r['call_us']:.0f} / {r['executor_compute_us']:.0f}",
                     "PASS" if r["pass"] else "FAIL"])
    out = table(["app", "N", "placement", "provider", "rank alone", "rank + leased core", "two ranks, no rfaas",
                 "speed-up", "of two ranks", "of two ranks, end to end", "set-up ms (lease+deploy / regions / calibration)",
                 "call us (round trip / leased core's compute)", "verified"], rows)
    phases = [[r["size"], r["placement"].replace("_", " "), r["provider"], f"{1e3 * r['phase_own_s']:.1f}",
               f"{r['own_rows_per_s']:.0f}", f"{1e3 * r['phase_post_s']:.1f}", f"{1e3 * r['phase_test_s']:.1f}",
               f"{1e3 * r['phase_wait_s']:.1f}", f"{1e3 * r['phase_leased_s']:.1f}", f"{r['leased_rows_per_s']:.0f}"]
              for r in sorted(rs, key=lambda r: (r["placement"], r["provider"], r["size"]))
              if r["app"] == "gemm" and "phase_own_s" in r]
    if phases:
        out += ("\n\nWhere gemm's product goes on the rank (the median product, each phase measured; the leased "
                "core's time from its own counters):\n\n" + table(
                    ["N", "placement", "provider", "own rows ms", "own rows/s", "posting ms",
                     "progress between slabs ms", "wait after own rows ms", "leased core computed ms",
                     "leased rows/s"], phases))
    return out


def queue(rs):
    rows = [[r["provider"], r["tiles"], r["slots"], f"{1e3 * r['rfaas_s']:.0f}", f"{1e3 * r['one_slot_per_tile_s']:.0f}",
             f"{1e3 * r['mpi2_s']:.0f}", f"{1e3 * r['local_s']:.0f}", f(r["of_no_queue"], 2), f(r["of_ideal"], 2)]
            for r in sorted(rs, key=lambda r: (r["provider"], r["slots"]))]
    return "ms per product:\n\n" + table(
        ["provider", "tiles", "slots", "rfaas", "a slot per tile", "mpirun -np 2", "rank alone", "of a slot per tile",
         "of mpirun -np 2"], rows)


def verbs(rs):
    by = {}
    for r in rs:
        if r.get("metric") == "hot_rtt_us":
            by.setdefault(r["size"], []).append(r)
    rows = []
    for s, runs in sorted(by.items()):
        ratios = sorted(r["ratio"] for r in runs)
        raws = sorted(r["raw_median"] for r in runs)
        echos = sorted(r["echo_median"] for r in runs)
        mid = len(ratios) // 2
        rows.append([size(s), len(runs), f(raws[mid], 2), f(echos[mid], 2), f(ratios[mid]),
                     f"{ratios[0]:.3f}–{ratios[-1]:.3f}"])
    return "Hot round trip over verbs in the Soft-RoCE guest, microseconds (median over runs and boots):\n\n" + table(
        ["size", "runs", "raw write", "rfaas echo", "echo / raw", "range of ratios"], rows)


COMMANDS = {
    "fabric": "scripts/bench/fabric.sh",
    "invoke": "scripts/bench/invoke.sh",
    "mpi": "scripts/bench/mpi.sh",
    "broker": "scripts/bench/broker.sh",
    "apps": "scripts/bench/apps.sh",
    "queue": "scripts/bench/queue.sh",
    "verbs-invoke": "scripts/bench/verbs-invoke.sh",
}


def replace_block(text, name, body):
    pat = re.compile(r"(<!-- figures:%s -->\n).*?(<!-- /figures:%s -->)" % (name, name), re.S)
    if not pat.search(text):
        return text, False
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text), True


def main():
    d = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def said(name):
        stamp = json.load(open(os.path.join(d, name + ".stamp.json")))
        return (f"Measured {stamp['date']} by the build of `{stamp['commit']}` on {stamp['machine']}, "
                f"with `scripts/bench/figures.sh`")
    perf_path = os.path.join(root, "docs", "performance.md")
    perf = open(perf_path).read()
    done = []
    for name, render in (("fabric", fabric), ("invoke", invoke), ("mpi", mpi), ("apps", apps), ("queue", queue),
                         ("verbs-invoke", verbs)):
        rs = lines(d, name)
        if not rs:
            continue
        body = f"{said(name)} (`{COMMANDS[name]}`; JSON lines: `docs/figures/{name}.jsonl`).\n\n{render(rs)}\n"
        perf, ok = replace_block(perf, name, body)
        if ok:
            done.append(name)
    rs = lines(d, "broker")
    if rs:
        txt = open(os.path.join(d, "broker.txt")).read()
        body = f"{said('broker')} (`{COMMANDS['broker']}`; JSON lines: `docs/figures/broker.jsonl`).\n\n{broker(rs, txt)}\n"
        perf, ok = replace_block(perf, "broker", body)
        if ok:
            done.append("broker")
    open(perf_path, "w").write(perf)

    qs = os.path.join(d, "quickstart.txt")
    if os.path.exists(qs):
        out = [l for l in open(qs).read().splitlines()
               if not l.startswith(("install-deps:", "[", "ninja:", "-- "))]
        while out and not out[0].startswith("quickstart: broker"):
            out.pop(0)
        readme_path = os.path.join(root, "README.md")
        readme = open(readme_path).read()
        body = (f"{said('quickstart')} (`./scripts/quickstart.sh`):\n\n```\n" + "\n".join(out).strip() + "\n```\n")
        readme, ok = replace_block(readme, "quickstart", body)
        if ok:
            done.append("quickstart (README)")
        open(readme_path, "w").write(readme)
    print("figures-report: written: " + ", ".join(done))


if __name__ == "__main__":
    main()
