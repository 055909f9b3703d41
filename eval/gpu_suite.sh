#!/usr/bin/env bash
# One GPU check of mmtok, sized to finish within 8 minutes on one H100/H200. Run it first on any GPU session.
#
#   bash eval/gpu_suite.sh                 # on a CUDA machine; results in eval/results/gpu_suite/
#   bash eval/gpu_suite.sh --dry-run       # the same steps on CPU at tiny sizes (< ~2 min on 2 cores)
#   bash eval/gpu_suite.sh --out DIR       # results in DIR instead
#
# Steps (each with its own time limit; a failing step does not stop the others):
#   tests         pytest -m gpu tests      (junit XML; on GPU it fails if every GPU test was skipped)
#   lookup        eval/bench_lookup.py --device cuda at its full (issue-4) grid of sizes
#   train_torch   eval/bench_train.py: llamagen_vq16, 256 px, batch 16, bf16, nearest-code search in torch
#   train_triton  the same with the fused Triton lookup kernel (backend forced, so a failure is loud)
#   smoke         mmtok train test_tiny --max-steps 50, then `mmtok runs` on it
# Everything goes under the results folder: logs/STEP.log, the JSON of each step, summary.json, and a summary
# table on stdout. When $OUT is set, the folder is also copied to $OUT/gpu_suite. The exit code is non-zero
# when any step failed. --dry-run sets CUDA_VISIBLE_DEVICES= and TRITON_INTERPRET=1 (the kernel runs in
# Triton's interpreter) and shrinks every size; it is run by tests/test_gpu_suite.py so the script cannot rot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
DRY=0
RES=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --out) RES="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (use --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
done
RES="${RES:-$ROOT/eval/results/gpu_suite}"
mkdir -p "$RES/logs"
RES="$(cd "$RES" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

if [[ $DRY == 1 ]]; then
  export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
  DEVICE=cpu
  LOOKUP_ARGS=(--device cpu --cases 256:64:8 --methods mmtok,cdist --backend triton --repeats 1 --warmup 0)
  TRAIN_ARGS=(--device cpu --recipe llamagen_vq16 --resolution 32 --batch 2 --precision 32-true --steps 1 --warmup 1
              --set loss.weights.perceptual=0 --set loss.gan.start_step=0 --set model.ch=8 --set loss.gan.ndf=8
              --set model.quantizer.codebook_size=256)
  SMOKE_STEPS=4
  LIMITS=(tests=120 lookup=120 train=180 smoke=180)
else
  unset TRITON_INTERPRET
  DEVICE=cuda
  LOOKUP_ARGS=(--device cuda)
  TRAIN_ARGS=(--device cuda --recipe llamagen_vq16 --resolution 256 --batch 16 --precision bf16-mixed --steps 10
              --warmup 3 --set loss.perceptual.allow_untrained=true --set loss.gan.start_step=0)
  SMOKE_STEPS=50
  LIMITS=(tests=80 lookup=170 train=70 smoke=70)  # 460 s at most, plus start-up: within 8 minutes
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_suite.sh: no CUDA device visible to torch (use --dry-run to check the script on CPU)" >&2
    exit 1
  fi
fi
if ! "$PY" -c "import mmtok.cli.main"; then
  echo "gpu_suite.sh: mmtok is not installed here (pip install -e '.[dev]')" >&2
  exit 1
fi
limit() { local kv; for kv in "${LIMITS[@]}"; do [[ ${kv%%=*} == "$1" ]] && echo "${kv#*=}"; done; }

STEPS=()
# run_step NAME LIMIT_KEY CMD...: run with a time limit, log to logs/NAME.log, record status and seconds
run_step() {
  local name="$1" key="$2"; shift 2
  local t0 rc=0
  t0=$(date +%s)
  echo "== $name: $*"
  timeout --kill-after=10 "$(limit "$key")" "$@" >"$RES/logs/$name.log" 2>&1 || rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [[ $rc == 0 ]]; then
    echo "   ok in ${secs}s"
  else
    [[ $rc == 124 || $rc == 137 ]] && echo "   TIME LIMIT ($(limit "$key") s)" >>"$RES/logs/$name.log"
    echo "   FAILED (exit $rc) in ${secs}s; last lines of logs/$name.log:"
    tail -n 15 "$RES/logs/$name.log" | sed 's/^/   | /'
  fi
  STEPS+=("$name $rc $secs")
}

run_step tests tests "$PY" -m pytest -m gpu -q -p no:cacheprovider tests --junitxml="$RES/pytest_gpu.xml"
run_step lookup lookup "$PY" eval/bench_lookup.py "${LOOKUP_ARGS[@]}" --out "$RES/bench_lookup_$DEVICE.json"
for backend in torch triton; do
  run_step "train_$backend" train "$PY" eval/bench_train.py "${TRAIN_ARGS[@]}" --lookup "$backend" \
    --json "$RES/bench_train_${DEVICE}_$backend.json"
done
smoke() {  # run as `bash -c smoke` under the time limit: needs the exported variables below
  "$PY" -m mmtok.cli.main train test_tiny --out "$WORK/smoke" --max-steps "$SMOKE_STEPS"
  "$PY" -m mmtok.cli.main runs "$WORK" --json >"$RES/smoke_runs.json"
  "$PY" -m mmtok.cli.main runs "$WORK"
  mkdir -p "$RES/smoke"
  cp "$WORK/smoke/summary.json" "$WORK/smoke/recipe.yaml" "$RES/smoke/"
  cp "$WORK"/smoke/logs/version_0/metrics.csv "$RES/smoke/" 2>/dev/null || true
  cp "$WORK"/smoke/curves.png "$RES/smoke/" 2>/dev/null || true
  local grid; grid=$(ls "$WORK"/smoke/samples/step_*.png 2>/dev/null | tail -n 1 || true)
  [[ -n "$grid" ]] && cp "$grid" "$RES/smoke/"
  return 0
}
export -f smoke
export PY WORK RES SMOKE_STEPS
run_step smoke smoke bash -c 'set -euo pipefail; smoke'

# Check what each step wrote, then the summary table and summary.json.
rc=0
"$PY" - "$RES" "$DRY" "$SMOKE_STEPS" "${STEPS[@]}" <<'PYEOF' || rc=$?
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

res, dry, smoke_steps = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = [dict(zip(("name", "rc", "seconds"), s.split())) for s in sys.argv[4:]]
device = "cpu" if dry else "cuda"


def load(name):
    path = res / name
    return json.loads(path.read_text()) if path.is_file() else None


def check(step):
    name, problems, note = step["name"], [], ""
    if name == "tests":
        xml = res / "pytest_gpu.xml"
        if not xml.is_file():
            return ["no junit XML"], ""
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        note = f"{n - fail - err - skip} passed, {fail + err} failed, {skip} skipped of {n}"
        if fail or err:
            problems.append("GPU tests failed")
        if not dry and (n == 0 or skip == n):
            problems.append("no GPU test ran")
    elif name == "lookup":
        data = load(f"bench_lookup_{device}.json")
        if data is None:
            return ["no JSON"], ""
        cells = [(c, m, r) for c in data["cases"] for m, r in c["methods"].items()]
        bad = [f"{m} {c['N']}x{c['K']}x{c['D']} {c['dtype']}: {r.get('status')}" for c, m, r in cells
               if m == "mmtok" and r.get("status") != "ok"]
        wrong = [f"{m} {c['N']}x{c['K']}x{c['D']}" for c, m, r in cells if r.get("ids_differ")]
        others = sum(1 for c, m, r in cells if m != "mmtok" and str(r.get("status", "")).startswith("error"))
        problems += bad[:3]
        note = (f"{len(data['cases'])} cases ({'complete' if data.get('complete') else 'INCOMPLETE'}), "
                f"backend {data['env']['mmtok_backend']}; ids differ: {', '.join(wrong) or 'none'}"
                + (f"; {others} other-method errors" if others else ""))
        if not data.get("complete"):
            problems.append("not every case finished")
    elif name.startswith("train_"):
        data = load(f"bench_train_{device}_{name[6:]}.json")
        if data is None:
            return ["no JSON"], ""
        r = data["rows"][0]
        note = (f"{r['recipe']} {r['resolution']}px b{r['batch']} {r['precision']}: {r['images_per_s']} img/s, "
                f"{r['peak_mem_MiB']:.0f} MiB peak")
        step["images_per_s"] = r["images_per_s"]
    elif name == "smoke":
        data = load("smoke/summary.json")
        if data is None:
            return ["no summary.json"], ""
        final = data.get("final", {})
        note = (f"step {data.get('step')}, {data.get('status', '?')}, {data.get('seconds')} s"
                + (f", held-out PSNR {final['val/psnr']:.2f} dB" if "val/psnr" in final else ""))
        if data.get("step") != smoke_steps:
            problems.append(f"stopped at step {data.get('step')}, not {smoke_steps}")
        runs = load("smoke_runs.json")
        if not runs or runs[0].get("step") != smoke_steps:
            problems.append("`mmtok runs` did not list the smoke run")
    return problems, note


failed = 0
for step in steps:
    try:
        problems, note = check(step)
    except Exception as e:  # a result file that is not what it should be
        problems, note = [f"unreadable result: {type(e).__name__}: {e}"[:200]], ""
    if step["rc"] != "0":
        problems.insert(0, "time limit" if step["rc"] in ("124", "137") else f"exit {step['rc']}")
    step.update(status="ok" if not problems else "FAIL", problems=problems, note=note)
    failed += bool(problems)
speed = {s["name"]: s.get("images_per_s") for s in steps}
if speed.get("train_torch") and speed.get("train_triton"):
    ratio = speed["train_triton"] / speed["train_torch"]
    next(s for s in steps if s["name"] == "train_triton")["note"] += f" ({ratio:.2f}x torch lookup)"

summary = dict(mode="dry-run (CPU)" if dry else "gpu", device=device, failed=failed, steps=steps)
try:
    import torch
    summary["device_name"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    summary["torch"] = torch.__version__
except Exception as e:  # the summary must still be written
    summary["device_name"] = f"unknown ({type(e).__name__})"
(res / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

print(f"\nmmtok GPU suite, {summary['mode']}, {summary['device_name']}: results in {res}")
print(f"{'step':<14}{'status':<8}{'seconds':>8}  details")
for s in steps:
    print(f"{s['name']:<14}{s['status']:<8}{s['seconds']:>8}  {s['note']}")
    for p in s["problems"]:
        print(f"{'':<30}! {p}")
sys.exit(1 if failed else 0)
PYEOF

if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/gpu_suite"
  cp -r "$RES/." "$OUT/gpu_suite/"
  echo "copied to $OUT/gpu_suite"
fi
exit $rc
