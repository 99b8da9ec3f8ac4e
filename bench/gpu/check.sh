#!/bin/bash
# What to run when a GPU is lent (README, "On a GPU"): the CUDA tests and the conformance
# suite on the device, larger shapes than the simulator can run, and the GPU bench table.
# Run from the repository root; results go to $OUT (the device tool's folder) or ./gpu-out.
set -u
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH=$PWD:$PWD/bench/gpu
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
FASTRNN_REQUIRE_CYTHON=1 python3 setup.py -q build_ext --inplace > "$out/build.log" 2>&1 \
    || echo "Cython build failed (see build.log): the CPU columns will be missing"
python3 -m fastrnn info > "$out/info.txt" 2>&1; grep -E "cuda|CPU" "$out/info.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$out/test_cuda.log" | tail -3
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_conformance.py -k cuda 2>&1 \
    | tee "$out/test_conformance.log" | tail -3
timeout 120 python3 bench/gpu/larger_shapes.py 2>&1 | tee "$out/larger_shapes.txt" | grep -c ^ok
grep FAIL "$out/larger_shapes.txt"
timeout "${BENCH_SECONDS:-300}" python3 -m fastrnn bench --cells rnn_tanh lstm gru \
    --backends cuda torch-cuda fastrnn.torch-cuda --min-time 0.2 --json "$out/gpu_bench.json" \
    > "$out/bench.txt" 2>&1
tail -3 "$out/bench.txt"
