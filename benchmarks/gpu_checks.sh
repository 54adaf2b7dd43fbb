#!/usr/bin/env bash
# The GPU rows of issues #13, #15 and #17 as one prepared run on a lent GPU machine (the image
# has torch with CUDA; our other packages travel as wheels, benchmarks/gpu_wheels.sh).
#   bash benchmarks/gpu_checks.sh install .whl_a .whl_b  # first call (carry both: 62 MB)
#   bash benchmarks/gpu_checks.sh run .whl_c             # next call, within the machine's
#                                                        # warm time: installs PyAV, measures
# The wheels land in .site/ (git-ignored), which stays on the warm machine between calls.
# Results go to $OUT (the device tool's folder; default benchmarks/results/gpu): train steps of
# all four stages at the reference profile in fp32 and bf16 (EAMM's batch sizes), generation
# speed for 10 s and 60 s of speech, and generation memory for 10 s against 10 minutes.
# DEVICE=cpu with PROFILE=tiny and SHORT=1 runs the same steps in seconds (a check of the kit).
set -uo pipefail
cd "$(dirname "$0")/.."
step=${1:?install or run}
site=$PWD/.site
py=${PYTHON:-python3}
for wheels in "${@:2}"; do
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl || exit 1
done
[[ "$step" == install ]] && exit 0
export PYTHONPATH=$PWD:$site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
device=${DEVICE:-cuda}
profile=${PROFILE:-reference}
if [[ -n "${SHORT:-}" ]]; then
    train=(--steps 1 --warmup 0)
    speech=(--seconds 1 2)
    memory=(--seconds 1 3)
else
    train=(--steps 10 --warmup 3)
    speech=(--seconds 10 60)
    memory=(--seconds 10 600)
fi
(nvidia-smi || true) >"$out/machine.txt" 2>&1
"$py" -c "import torch; print(torch.__version__, torch.cuda.is_available())" >>"$out/machine.txt"
failed=0
measure() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$py" "$@" 2>&1 | tee "$out/$name.log" || {
        echo "$name: failed or timed out" | tee -a "$out/$name.log"
        failed=1
    }
}
# the batch sizes of EAMM's per-step times that issue #13 compares against (H200: stage 1 B8
# 162-231 ms, stage 2 B6 332-419, stage 3 B16 418-620, FOMM B8 80)
measure train_step 120 benchmarks/train_step.py --profile "$profile" --device "$device" \
    --batch train_fomm=8 train_a2fd=8 finetune_a2fd=6 train_emotion=16 \
    --precision fp32 bf16 "${train[@]}" --json "$out/train_step_gpu.json"
measure generate 180 benchmarks/generate.py --profile "$profile" --device "$device" \
    "${speech[@]}" --configs fp32:16 bf16:16 bf16+channels_last:32 --net-repeats 3 \
    --json "$out/generate_gpu.json"
measure generate_memory 240 benchmarks/generate_memory.py --profile "$profile" \
    --device "$device" "${memory[@]}" --json "$out/generate_memory_gpu.json"
exit $failed
