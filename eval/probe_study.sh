#!/usr/bin/env bash
# The probe table of docs/probe.md: the four image quick starts (VQGAN, SDE, TokenFlow, SEED) as shipped, trained on
# eval/photos.py's 229 training photos, then probed (`mmtok eval --probe`) on the report half of
# eval/labelled_photos.py's labelled photographs (settings were chosen on the dev half only).
# Usage: bash eval/probe_study.sh [WORK_DIR] [SPLIT]   (SPLIT: report (default) or dev); results in
# eval/results/probe/SPLIT.json. About 20 minutes on 2 CPU cores (five trainings, one at a time).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-runs/probe_study}
split=${2:-report}
mkdir -p "$work/runs"
[ -d "$work/photos/train" ] || python "$here/photos.py" "$work/photos"
[ -d "$work/labelled/$split" ] || python "$here/labelled_photos.py" "$work/labelled"
data=(--set "data.train=$work/photos/train")
models=()
for recipe in quickstart sde_quickstart tokenflow_quickstart; do
  [ -f "$work/runs/$recipe/summary.json" ] || mmtok train "$recipe" --out "$work/runs/$recipe" "${data[@]}"
  models+=("$recipe=$work/runs/$recipe")
done
[ -f "$work/runs/seed1/summary.json" ] || mmtok train seed_quickstart_stage1 --out "$work/runs/seed1" "${data[@]}"
[ -f "$work/runs/seed2/summary.json" ] || mmtok train seed_quickstart_stage2 --out "$work/runs/seed2" \
  --set "init.path=$work/runs/seed1" "${data[@]}"
models+=("seed_quickstart=$work/runs/seed2")
python "$here/probe_families.py" "$work/labelled/$split" "$here/results/probe/$split.json" "${models[@]}"
