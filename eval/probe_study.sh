#!/usr/bin/env bash
# The probe table of docs/probe.md: the four image quick starts (VQGAN, SDE, TokenFlow, SEED) as shipped, trained on
# the built-in demo photos and on eval/photos.py's 229 training photos, then probed (`mmtok eval --probe`) on the
# report half of eval/labelled_photos.py's labelled photographs (settings were chosen on the dev half only).
# Usage: bash eval/probe_study.sh [WORK_DIR] [SPLIT]   (SPLIT: report (default) or dev); results in
# eval/results/probe/SPLIT.json. About 45 minutes on 2 CPU cores (eight trainings, one at a time).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-runs/probe_study}
split=${2:-report}
mkdir -p "$work"
[ -d "$work/photos/train" ] || python "$here/photos.py" "$work/photos"
[ -d "$work/labelled/$split" ] || python "$here/labelled_photos.py" "$work/labelled"
models=()
for data in demo photos; do
  extra=()
  [ "$data" = photos ] && extra=(--set "data.train=$work/photos/train")
  for recipe in quickstart sde_quickstart tokenflow_quickstart; do
    [ -f "$work/$data/$recipe/summary.json" ] || mmtok train "$recipe" --out "$work/$data/$recipe" "${extra[@]}"
    models+=("${data}_$recipe=$work/$data/$recipe")
  done
  [ -f "$work/$data/seed1/summary.json" ] || mmtok train seed_quickstart_stage1 --out "$work/$data/seed1" "${extra[@]}"
  [ -f "$work/$data/seed2/summary.json" ] || mmtok train seed_quickstart_stage2 --out "$work/$data/seed2" \
    --set "init.path=$work/$data/seed1" "${extra[@]}"
  models+=("${data}_seed_quickstart=$work/$data/seed2")
done
python "$here/probe_families.py" "$work/labelled/$split" "$here/results/probe/$split.json" "${models[@]}"
