#!/usr/bin/env bash
# Side-by-side training-step benchmark: slatrun (ONNX Runtime) against the
# PyTorch peer (tools/peer/peer.py), run interleaved on the same machine
# with the same threads: ours, peer, ours, peer, ... for --rounds rounds.
# Prints per method the median over rounds of each side's median ms/step
# (wall clock) and median CPU ms/step (all threads of the process: the
# steadier number on a shared machine), the ratios ours/PyTorch, slatrun's
# split (attack passes, train pass, Go side) and allocations per step, and
# SLAT/FGSM-RS on each side. Both sides interleave their methods' steps.
#
#   tools/bench.sh [--model convnet|preactresnet18] [--methods LIST] [--batch 128]
#                  [--steps N] [--warmup W] [--threads T] [--rounds R] [--out FILE]
#                  [--kernels onednn|onednn-direct|ort|both|all]
#
# Defaults: convnet, standard,fgsm-rs,slat,pgd-7, batch 128, 10 steps after
# 3 warm-up, 1 thread, 3 rounds. preactresnet18 steps take seconds each;
# use e.g. --steps 3 --warmup 1 --rounds 2 there. --kernels both runs
# slatrun twice a round, with its oneDNN kernels and with ONNX Runtime's
# own only, all three times adding the oneDNN kernels without Winograd
# (onednn-direct) (default: onednn, slatrun's default). The raw JSON lines of
# every round go to --out (default: a temporary file, named at the end).
# Extra slatrun bench flags can be passed in $SLATRUN_BENCH_FLAGS (e.g.
# "--spinning"). PyTorch comes from /usr/bin/python3 (Debian's python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."

model=convnet methods=standard,fgsm-rs,slat,pgd-7 batch=128 steps=10 warmup=3 threads=1 rounds=3 out="" kernels=onednn
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kernels) kernels=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$kernels" in
  onednn|onednn-direct|ort) sets=("$kernels") ;;
  both) sets=(onednn ort) ;;
  all) sets=(onednn onednn-direct ort) ;;
  *) echo "bench.sh: --kernels $kernels: want onednn, onednn-direct, ort, both or all" >&2; exit 2 ;;
esac
py=/usr/bin/python3
[ -x "$py" ] || { echo "bench.sh: $py is missing (the peer needs Debian's python3-torch)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=$work/slatrun # a fresh build; bin/slatrun may be in use by a training run
go build -o "$bin" ./cmd/slatrun
[ -n "$out" ] || out=$(mktemp --suffix=.jsonl /tmp/slatrun-bench-XXXXXX)
: >"$out"

common=(--model "$model" --methods "$methods" --batch "$batch" --steps "$steps" --warmup "$warmup" --threads "$threads" --json)
for r in $(seq 1 "$rounds"); do
  for k in "${sets[@]}"; do
    echo "bench.sh: round $r/$rounds: slatrun, kernels $k" >&2
    # shellcheck disable=SC2086
    "$bin" bench "${common[@]}" --kernels "$k" ${SLATRUN_BENCH_FLAGS:-} |
      sed "s/^{/{\"round\":$r,/; s/\"side\":\"slatrun\"/\"side\":\"slatrun\/$k\"/" >>"$out"
  done
  echo "bench.sh: round $r/$rounds: pytorch" >&2
  "$py" tools/peer/peer.py "${common[@]}" --interleave | sed "s/^{/{\"round\":$r,/" >>"$out"
done

"$py" - "$out" "$methods" "${sets[@]}" <<'EOF'
import json, statistics, sys
path, methods = sys.argv[1], [m.strip() for m in sys.argv[2].split(",") if m.strip()]
ours = ["slatrun/" + k for k in sys.argv[3:]]
rows = [json.loads(l) for l in open(path) if l.startswith("{")]
def med(side, method, key):
    v = [r[key] for r in rows if r["side"] == side and r["method"] == method and key in r]
    return statistics.median(v) if v else float("nan")
r0 = rows[0]
rounds = len({r["round"] for r in rows})
print("# %s, batch %d, threads %d, %d rounds (medians over rounds of each run's median ms/step)"
      % (r0["model"], r0["batch"], r0["threads"], rounds))
print("%-9s %-13s %10s %10s %8s %9s %9s %8s %9s %9s %8s %6s %7s %8s" % ("method", "kernels", "ours_ms", "torch_ms",
      "ours/pt", "ours_cpu", "torch_cpu", "cpu_o/pt", "attack_ms", "train_ms", "go_ms", "go_%", "allocs", "img/s"))
for m in methods:
    p, pc = med("pytorch", m, "median_ms"), med("pytorch", m, "cpu_median_ms")
    for side in ours:
        o, oc = med(side, m, "median_ms"), med(side, m, "cpu_median_ms")
        print("%-9s %-13s %10.1f %10.1f %8.3f %9.1f %9.1f %8.3f %9.1f %9.1f %8.2f %6.2f %7g %8.1f" % (m, side[8:], o, p,
              o / p, oc, pc, oc / pc, med(side, m, "attack_ms"), med(side, m, "train_ms"),
              med(side, m, "go_ms"), med(side, m, "go_pct"), med(side, m, "allocs_per_step"),
              r0["batch"] / o * 1e3))
if "slat" in methods and "fgsm-rs" in methods:
    for side in ours + ["pytorch"]:
        print("SLAT/FGSM-RS %-8s wall %.3f  cpu %.3f" % (side, med(side, "slat", "median_ms") / med(side, "fgsm-rs", "median_ms"),
              med(side, "slat", "cpu_median_ms") / med(side, "fgsm-rs", "cpu_median_ms")))
print("raw JSON lines: %s" % path)
EOF
