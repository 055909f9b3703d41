#!/usr/bin/env bash
# The image families side by side at their quick-start budgets (README "Semantic tokenizers"):
# train each quick start as shipped on the built-in photos, then `mmtok eval` each on held-out photos packed
# with `mmtok data pack`. HELDOUT defaults to the held-out folder eval/photos.py builds (see compare_llamagen.py).
# Usage: bash eval/compare_families.sh [HELDOUT_FOLDER] [WORK_DIR]; results in eval/results/families_cpu/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
heldout=${1:-runs/compare_llamagen/photos/heldout}
work=${2:-runs/compare_families}
results="$here/results/families_cpu"
mkdir -p "$work" "$results"
mmtok data pack "$heldout" "$work/shards/heldout-%06d.tar" --shard-size 100000
# SEED's two stages: stage 2 starts from stage 1's run (init.path)
mmtok train seed_quickstart_stage1 --out "$work/seed_quickstart_stage1"
cp "$work/seed_quickstart_stage1/summary.json" "$results/seed_quickstart_stage1.summary.json"
for recipe in quickstart sde_quickstart tokenflow_quickstart seed_quickstart_stage2; do
  extra=()
  [ "$recipe" = seed_quickstart_stage2 ] && extra=(--set "init.path=$work/seed_quickstart_stage1")
  mmtok train "$recipe" --out "$work/$recipe" "${extra[@]}"
  mmtok eval "$work/$recipe" --data "$work/shards/heldout-000000.tar" --out "$work/$recipe/eval_heldout" --force
  cp "$work/$recipe/summary.json" "$results/$recipe.summary.json"
  cp "$work/$recipe/eval_heldout/metrics.json" "$results/$recipe.eval.json"
done
