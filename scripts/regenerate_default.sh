#!/usr/bin/env bash
# Regenerate every committed result of the built-in suite from nothing: the training runs behind the
# README's "Results on the built-in suite" tables, their int8 accuracy (docs/deployment.md), and
# reports/default/.
#
#   bash scripts/regenerate_default.sh            # ~1 hour on the project's 2-core machine
#   INT8=1 bash scripts/regenerate_default.sh     # + the int8 accuracy of every run (ksm-export --int8)
#
# Deterministic: seed 0 and ONE torch thread per process (the thread count moves the last digits of
# a float32 run), two independent lanes of runs side by side. The tables it prints are the README's
# (the int8 one, with INT8=1, is docs/deployment.md's).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
RUNS="${RUNS:-runs}"
ABLATION="${ABLATION:-runs-ablation}"
LORA="${LORA:-runs-lora}"
REPORT="${REPORT:-reports/default}"
O=(--suite default --epochs 2 --max-train 3000 --no-progress --threads 1)

lane1() {
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$RUNS" --method ksm --method piggyback --method finetune --method feature
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$RUNS" --method ksm --no-soft
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$ABLATION/piggyback-lr1e-4" --method piggyback --lr-mask 1e-4 --lr-head 1e-4
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$LORA" --method lora --lora-rank 4
}
lane2() {
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$RUNS" --method piggyback --batchnorm task
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$RUNS" --method packnet --method cpg
  "$BIN/ksm-train" "${O[@]}" --runs-dir "$LORA" --method lora --lora-rank 16
}
mkdir -p "$RUNS" "$ABLATION"
lane1 > "$ABLATION/lane1.log" 2>&1 &
one=$!
lane2 > "$ABLATION/lane2.log" 2>&1 &
two=$!
wait "$one" && wait "$two" || { echo "a training lane failed: see $ABLATION/lane1.log and lane2.log" >&2; exit 1; }

if [ "${INT8:-0}" = 1 ]; then  # int8 accuracy of every run (slow: four forms of each run evaluated)
  "$BIN/ksm-export" "$RUNS"/*/ "$RUNS"/packnet/*/ "$RUNS"/cpg/*/ "$LORA"/*/ --int8 --threads 2 --out-dir exports
fi
"$BIN/python" -m ksm.compare.results "$RUNS" "$ABLATION" "$LORA"
"$BIN/ksm-sim" --masks "$RUNS"/* "$LORA"/* --profile all --report "$REPORT"
