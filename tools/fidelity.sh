#!/usr/bin/env bash
# Fidelity: slatrun beside the PyTorch peer (tools/peer/peer.py) on the same
# Fashion-MNIST recipe and the same seeds, seed by seed. Each side trains
# convnet width 16 with cyclic lr to 0.2, batch 128, ε = η = 0.1, then its
# final model is scored on the first 1000 test images: clean accuracy and,
# unless ATTACK=none, the attack (default PGD-50-10, step ε/4).
#
#   tools/fidelity.sh NAME METHOD EPOCHS TRAIN_N SEED...
#
#   tools/fidelity.sh bn-1epoch slat 1 6400 0 1 2 3 4 5     # minutes
#   ATTACK=pgd-50-10 tools/fidelity.sh recipe slat 5 0 0 1 2  # hours
#
# TRAIN_N 0 is the recipe's full set (slatrun holds 1000 out for its probe,
# the peer trains on all 60,000). Environment: JOBS runs at once (default
# 2, one thread each), ATTACK (pgd-50-10 or none; default none), SIDES
# (default "slatrun peer"), SLATRUN (the binary; default bin/slatrun), FLAGS (extra slatrun train flags, e.g.
# "--bn-stats train"), PEER_FLAGS (extra peer flags), TWIN=1 (the peer starts
# from slatrun's initial weights for the seed, `slatrun export --seed`, and
# visits the images in slatrun's order, on slatrun's training split: each
# seed is then one run made twice, not two draws). Runs go to
# runs/fidelity/NAME/{slatrun,peer}-SEED; finished ones are kept and
# reused, so the script can be stopped and run again. The table goes to
# stdout and runs/fidelity/NAME/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 5 ] || { sed -n '2,23p' "$0"; exit 2; }
name=$1 method=$2 epochs=$3 trainn=$4
shift 4
seeds=("$@")
jobs=${JOBS:-2}
attack=${ATTACK:-none}
sides=${SIDES:-"slatrun peer"}
dir=runs/fidelity/$name
mkdir -p "$dir"
bin=${SLATRUN:-bin/slatrun}
[ -x "$bin" ] || go build -o "$bin" ./cmd/slatrun
py=/usr/bin/python3

one() { # side seed (set -e does not reach a function called from ||: each step says || return 1)
  local side=$1 seed=$2 out="$dir/$1-$2"
  [ -f "$out/result.json" ] && return 0
  mkdir -p "$out"
  if [ "$side" = slatrun ]; then
    local val=1000 tn=() logev=()
    [ "${TWIN:-0}" = 1 ] && logev=(--log-every 1)
    if [ "$trainn" != 0 ]; then val=0 tn=(--train-n "$trainn"); fi
    [ -f "$out/run/state.bin" ] && resume=(--resume "$out/run") || resume=()
    if [ ${#resume[@]} -gt 0 ]; then
      "$bin" train "${resume[@]}" --threads 1 >"$out/train.log" 2>&1 || return 1
    else
      # shellcheck disable=SC2086
      "$bin" train --model convnet --data fashion-mnist --method "$method" --eps 0.1 \
        --epochs "$epochs" --batch 128 --lr 0.2 --schedule cyclic --seed "$seed" \
        --val-n "$val" "${tn[@]}" "${logev[@]}" --threads 1 --overwrite ${FLAGS:-} --out "$out/run" >"$out/train.log" 2>&1 || return 1
    fi
    local attacks=fgsm
    [ "$attack" != none ] && attacks=$attack
    "$bin" eval --model "$out/run/model.onnx" --data fashion-mnist --eps 0.1 --attacks "$attacks" \
      --test-n 1000 --eval-batch 250 --threads 1 --out "$out/eval.json" >"$out/eval.log" 2>&1 || return 1
    "$py" - "$out/eval.json" "$attack" >"$out/result.tmp" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
rob = None if sys.argv[2] == "none" else 100 * r["attacks"][0]["accuracy"]
print(json.dumps({"clean": 100 * r["clean"], "robust": rob}))
EOF
    [ $? -eq 0 ] || return 1
    mv "$out/result.tmp" "$out/result.json"
  else
    local steps=50 restarts=10 tn=$trainn twin=()
    [ "$attack" = none ] && steps=0
    if [ "${TWIN:-0}" = 1 ]; then
      # slatrun's split: with TRAIN_N 0 it holds the last 1000 images out.
      [ "$trainn" = 0 ] && tn=59000
      "$bin" export --model convnet --seed "$seed" --out "$out/init.onnx" >/dev/null || return 1
      twin=(--init-onnx "$out/init.onnx" --order slatrun --step-log)
    fi
    if [ "$attack" != none ] && [ "$attack" != pgd-50-10 ]; then
      echo "fidelity: the peer runs PGD-50-10 only" >&2; return 1
    fi
    # shellcheck disable=SC2086
    "$py" tools/peer/peer.py --train --method "$method" --epochs "$epochs" --eps 0.1 \
      --seed "$seed" --train-n "$tn" --test-n 1000 --threads 1 "${twin[@]}" \
      --pgd-steps "$steps" --pgd-restarts "$restarts" --json ${PEER_FLAGS:-} >"$out/peer.json" 2>"$out/peer.log" || return 1
    "$py" -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(json.dumps({"clean": r["clean_acc"], "robust": r["pgd_acc"]}))' \
      "$out/peer.json" >"$out/result.tmp" || return 1
    mv "$out/result.tmp" "$out/result.json"
  fi
}
export -f one
export dir method epochs trainn attack bin py FLAGS PEER_FLAGS TWIN

for seed in "${seeds[@]}"; do
  for side in $sides; do echo "$side $seed"; done
done | xargs -P "$jobs" -L 1 bash -c 'one "$0" "$1" || echo "fidelity: $0 seed $1 failed (see '"$dir"'/$0-$1)" >&2'

"$py" - "$dir" "$sides" "${seeds[@]}" <<'EOF' | tee "$dir/results.tsv"
import json, os, statistics, sys
d, sides, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("side\tmetric\t" + "\t".join("seed " + s for s in seeds) + "\tmedian\tmean")
table = {}
for side in sides:
    rows = {}
    for s in seeds:
        p = os.path.join(d, "%s-%s" % (side, s), "result.json")
        r = json.load(open(p)) if os.path.exists(p) else {}
        for k in ("clean", "robust"):
            rows.setdefault(k, []).append(r.get(k))
    for k, vals in rows.items():
        got = [v for v in vals if v is not None]
        if not got:
            continue
        cells = ["%.1f" % v if v is not None else "-" for v in vals]
        print("%s\t%s\t%s\t%.1f\t%.1f" % (side, k, "\t".join(cells), statistics.median(got), statistics.mean(got)))
        table[side, k] = vals
# Seed by seed, peer − slatrun (with TWIN=1 the pairs are one run made twice).
for k in ("clean", "robust"):
    a, b = table.get(("peer", k)), table.get(("slatrun", k))
    if a and b:
        diff = [p - q if p is not None and q is not None else None for p, q in zip(a, b)]
        got = [v for v in diff if v is not None]
        if got:
            cells = ["%+.1f" % v if v is not None else "-" for v in diff]
            print("peer-slatrun\t%s\t%s\t%+.1f\t%+.1f" % (k, "\t".join(cells), statistics.median(got), statistics.mean(got)))
EOF
