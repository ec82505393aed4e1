#!/usr/bin/env bash
# The GPU figures of bench/README.md in one run (about 5 minutes on one H200), each step on its own so one that
# fails leaves the others' figures:
#   1. the network alone and the embedder, fp32 / fp16 / bf16 at batch 1-256, and each precision's embeddings of
#      the demo's photos, letterboxed in batches, against fp32 computed one photo at a time;
#   2. one recognize worker's own work on a burst of 512 12-MP JPEGs: micro-batch 16 / 64 with 8 / 16 decoding
#      threads, and the stages of one 64-photo recognizer call;
#   3. the fp16 network under torch.compile at batch 64 and 256 (compile time recorded), last as it is the slowest.
# Usage, from the repository root: bash bench/gpu_suite.sh DEMO_DIR [RESULTS_DIR]
# (DEMO_DIR: `landmarks demo prepare --out DIR`, or its copy by bench/shrink_demo.py, which is what travelled to
# the lent H200; results default to bench/results; PYTHON picks the interpreter).
set -uo pipefail
demo=${1:?usage: bench/gpu_suite.sh DEMO_DIR [RESULTS_DIR]}
out=${2:-bench/results}
python=${PYTHON:-python3}
mkdir -p "$out"
status=0
run() { echo "+ $*"; timeout "${STEP_TIMEOUT_S:-300}" "$@" || { echo "step failed ($?): $*"; status=1; }; }
run "$python" bench/bench_embed.py --backbones efficientnet_lite2 --precisions fp32 fp16 bf16 \
  --batches 1 16 64 256 --seconds 1 --parity "$demo" --out "$out/embed-gpu.json"
run "$python" bench/bench_recognize.py --demo "$demo" --micro-batch 16 64 --threads 8 16 --count 512 --profile \
  --out "$out/recognize-gpu.json"
run "$python" bench/bench_embed.py --backbones efficientnet_lite2 --precisions fp16 --batches 64 256 --compile \
  --compile-batches 64 256 --out "$out/embed-gpu-compile.json"
exit $status
