#!/usr/bin/env bash
# The one GPU command: every CuPy check and measurement, in order, into one folder.
#
#   bash benchmarks/gpu.sh OUTDIR            # all stages
#   GPU_STAGES="tests bench" bash benchmarks/gpu.sh OUTDIR
#
# Stages (each with its own time limit, its log in OUTDIR/<stage>.log):
#   tests    every backend-parametrised test on the cupy backend
#   parity   numpy and cupy give the same forward and gradients (tests/test_parity.py)
#   bench    benchmarks/bench_gpt.py on numpy and cupy, PyTorch eager (CPU and CUDA) beside them
#   scaling  benchmarks/bench_scaling.py: the card, a middle size, GPT-2 small at 256 and 1024
#   quick    happy_gpt --quick on cupy, and on numpy with the same seed
#   full     happy_gpt's default run on cupy
# It uses the CuPy (and PyTorch, if any) already installed, downloads nothing, and stops at once
# with exit status 2 when CuPy cannot see a GPU. PYTHON picks the interpreter (default python3);
# GPU_LIMIT_<STAGE>=SECONDS changes a stage's time limit (e.g. GPU_LIMIT_FULL=600), and
# GPU_BENCH_REPEATS / GPU_BENCH_ROUNDS bench_gpt's repetitions (default 10 and 2).
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash benchmarks/gpu.sh OUTDIR" >&2
    exit 2
fi
out=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$out" || { echo "error: cannot create the output folder $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
cd "$repo" || exit 2
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$py" - >"$out/device.txt" 2>&1 <<'PY'
from minirl import backend
backend.use("cupy")  # raises BackendError, with the reason, when cupy is missing or sees no GPU
cupy = backend.xp()
props = cupy.cuda.runtime.getDeviceProperties(0)
print(f"gpu: {props['name'].decode()}, {props['totalGlobalMem'] / 2**30:.0f} GiB, "
      f"compute capability {props['major']}.{props['minor']}")
print(f"cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
      f"driver {cupy.cuda.runtime.driverGetVersion()}")
PY
then
    tail -n 1 "$out/device.txt" >&2
    echo "error: benchmarks/gpu.sh needs CuPy and an NVIDIA GPU it can see; nothing was run." >&2
    exit 2
fi
cat "$out/device.txt"

stages=${GPU_STAGES:-tests parity bench scaling quick full}
summary="$out/summary.tsv"
printf 'stage\texit\tseconds\tresult\n' >"$summary"

run_stage() {  # run_stage NAME LIMIT_SECONDS COMMAND...: log, time limit, one summary row
    local name=$1 start rc override="GPU_LIMIT_${stage^^}"  # the stage's name: GPU_LIMIT_QUICK covers both
    local limit=${!override:-$2}
    shift 2
    start=$(date +%s)
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    local result
    result=$(grep -E "passed|failed|error|x \(|minirl is faster|VADER" "$out/$name.log" | tail -n 3 | tr '\t\n' '  ')
    [ "$rc" -eq 124 ] && result="timed out after ${limit}s; $result"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$result" >>"$summary"
    tail -n 5 "$out/$name.log"
}

per_test=()  # a hung test must not eat the whole stage's time
"$py" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 60)

for stage in $stages; do
    case $stage in
        tests) run_stage tests 240 "$py" -m pytest -q -p no:cacheprovider -rfE --tb=short "${per_test[@]}" \
                   -k cupy --ignore=tests/test_parity.py tests ;;
        parity) run_stage parity 120 "$py" -m pytest -q -p no:cacheprovider -rfE --tb=short "${per_test[@]}" \
                    tests/test_parity.py ;;
        bench) run_stage bench 240 "$py" benchmarks/bench_gpt.py --backends numpy,cupy --repeats "${GPU_BENCH_REPEATS:-10}" \
                   --rounds "${GPU_BENCH_ROUNDS:-2}" \
                   --json "$out/bench_gpt.json" ;;
        scaling) run_stage scaling 420 "$py" benchmarks/bench_scaling.py --backends numpy,cupy --repeats 2 \
                     --json "$out/scaling.json" --plot "$out/scaling.png" ;;
        quick) run_stage quick_cupy 120 "$py" -m minirl.examples.happy_gpt --quick --backend cupy \
                   --out "$out/happy_quick_cupy"
               run_stage quick_numpy 120 "$py" -m minirl.examples.happy_gpt --quick --backend numpy \
                   --out "$out/happy_quick_numpy" ;;
        full) run_stage full_cupy 420 "$py" -m minirl.examples.happy_gpt --backend cupy --out "$out/happy_cupy" ;;
        *) echo "error: unknown stage '$stage' in GPU_STAGES; choose from: tests parity bench scaling quick full" >&2
           exit 2 ;;
    esac
done

echo
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
! cut -f2 "$summary" | tail -n +2 | grep -qv '^0$'
