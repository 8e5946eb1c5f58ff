#!/usr/bin/env bash
# On the lent GPU machine, in the repository root (the copy the `run` tool
# makes of the working tree): puts the parts of `cargo xtask gpu-pack` back
# together, sets up the libraries and the Python packages, and runs one step.
#
#   docs/gpu/on-device.sh receive          # after each call that carried a part
#   docs/gpu/on-device.sh check            # check week2 --solution --device gpu
#   docs/gpu/on-device.sh check-stubs      # the same against the stubs
#   docs/gpu/on-device.sh check day16      # check and check-stubs take a target first
#                                          # (dayN, weekN, wNdM, all; default week2)
#   docs/gpu/on-device.sh bench            # bench week2 --device gpu --synthetic
#   docs/gpu/on-device.sh mutants          # the mutants of docs/gpu/mutants/*.patch (caught or not)
#   docs/gpu/on-device.sh exec NAME CMD..  # CMD with this environment, logged to NAME.txt
#
# Every step first moves any carried `.gpu/part*/` into target/gpu-parts/
# (ignored, so kept between calls on a warm machine), and unpacks once all
# pieces the MANIFEST lists are there (sha256 checked). Logs go to $OUT
# (or target/gpu-logs without it).
#
# Environment: LD_LIBRARY_PATH = libmlx.so's folder, the unpacked
# mlx_cuda_13.libs, and every `lib` folder of PyTorch's `nvidia/` (the CUDA
# 13 runtime, cuBLAS, cuDNN, NVRTC, ... MLX's CUDA backend loads), as
# docs/gpu.md describes; the wheels go to $SITE (default /tmp/site), with
# the unpacked CUDA wheel's `mlx/lib` and `mlx/include/cccl` copied into
# its `mlx/` (what installing mlx-cuda-13 would put there).
#
# TINY_LLM_GPU_ROOT=DIR: unpack and run in DIR instead of the current
# directory (for trying the unpack and install steps elsewhere).
set -euo pipefail

step=${1:?usage: on-device.sh receive|check|check-stubs|bench|mutants|exec [extra args]}
shift || true
root=${TINY_LLM_GPU_ROOT:-$PWD}
site=${SITE:-/tmp/site}
python=${PYTHON:-python3}
logs=${OUT:-$root/target/gpu-logs}
# The tool that lends the machine keeps nothing of the repo copy between calls but what it
# carries, so the parts and the unpacked tree live under /tmp (kept while the machine is warm),
# and target/ here is a link to them.
keep=${GPU_KEEP:-/tmp/tiny-llm-gpu}
parts=$keep/gpu-parts
mkdir -p "$keep/target"
[ -e "$root/target" ] || ln -s "$keep/target" "$root/target"
mkdir -p "$parts" "$logs"

# 1. Collect the carried parts.
for d in "$PWD"/.gpu/part*/; do
    [ -d "$d" ] || continue
    cp -f "$d"/* "$parts"/
done
[ -f "$parts/MANIFEST" ] || { echo "no part carried yet (.gpu/partN/ or $parts/MANIFEST)" >&2; exit 2; }

# 2. Unpack once every piece is there.
stamp=$keep/gpu-unpacked
want=$(sha256sum "$parts/MANIFEST" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    missing=0
    while read -r kind sum name; do
        [ "$kind" = piece ] || continue
        if [ ! -f "$parts/$name" ]; then
            echo "waiting for $name" >&2
            missing=1
        elif [ "$(sha256sum "$parts/$name" | cut -d' ' -f1)" != "$sum" ]; then
            echo "$name is damaged (sha256 differs from MANIFEST)" >&2
            exit 2
        fi
    done < "$parts/MANIFEST"
    if [ "$missing" = 1 ]; then
        [ "$step" = receive ] && exit 0
        echo "not every part has been carried yet" >&2
        exit 2
    fi
    pieces=$(awk '$1 == "piece" { print $3 }' "$parts/MANIFEST" | sort)
    (cd "$parts" && cat $pieces) | xz -d | tar -x --keep-directory-symlink -C "$root"
    # headers carried beside the parts (a pack made before cute/cutlass were in it)
    for t in "$parts"/include-*.tar.xz; do
        [ -f "$t" ] && tar -xJf "$t" -C "$root/target/mlx/cuda-dist/mlx/include"
    done
    echo "$want" > "$stamp"
    echo "unpacked $(echo $pieces | wc -w) pieces into $root/target" >&2
fi

# 3. The binaries hold the root they were built in (CARGO_MANIFEST_DIR):
#    make that path lead here.
build_root=$(awk '$1 == "build_root" { print $2 }' "$parts/MANIFEST")
if [ -n "$build_root" ] && [ "$(cd "$build_root" 2>/dev/null && pwd -P)" != "$(cd "$root" && pwd -P)" ]; then
    if [ -e "$build_root" ] && [ ! -L "$build_root" ]; then
        echo "warning: $build_root exists and is not this tree; the binaries read files there" >&2
    else
        mkdir -p "$(dirname "$build_root")"
        ln -sfn "$root" "$build_root"
    fi
fi

# 4. Libraries: libmlx.so (CUDA build), its bundled libs, PyTorch's nvidia/*/lib.
dist=$root/target/mlx/cuda-dist
lib=$dist/mlx/lib:$dist/mlx_cuda_13.libs
nv=$("$python" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
if [ -n "$nv" ]; then
    for l in "$nv"/nvidia/*/lib; do lib=$lib:$l; done
    # libmlx.so's RPATH also looks in $ORIGIN/../../nvidia/<name>/lib.
    [ -e "$dist/nvidia" ] || ln -s "$nv/nvidia" "$dist/nvidia"
else
    echo "warning: no PyTorch nvidia/ folder found by $python; MLX needs the CUDA 13 libraries" >&2
fi
export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# 5. Python: mlx (cp312) + mlx-lm into $site, the CUDA libmlx beside mlx's core.
# (A pack made with `gpu-pack --tests ...` has no wheels: nothing to install.)
if [ ! -f "$site/.tiny-llm-installed" ] && ! compgen -G "$root/target/gpu-wheels/*.whl" > /dev/null; then
    echo "no wheels packed (gpu-pack --tests): no Python packages installed" >&2
elif [ ! -f "$site/.tiny-llm-installed" ]; then
    # The mlx wheel is cp312 (the machine's Python 3.12); naming the version
    # lets this step be tried with another Python too.
    "$python" -m pip install --quiet --no-deps --no-index --only-binary :all: \
        --python-version 3.12 --target "$site" "$root"/target/gpu-wheels/*.whl
    mkdir -p "$site/mlx/lib" "$site/mlx/include"
    cp -a "$dist/mlx/lib/." "$site/mlx/lib/"
    for inc in cccl cute cutlass; do
        # cute/cutlass: MLX's own quantized matmul kernels (mlx-lm) include them
        [ ! -d "$dist/mlx/include/$inc" ] || cp -a "$dist/mlx/include/$inc" "$site/mlx/include/"
    done
    cp -a "$dist/mlx_cuda_13.libs" "$site/"
    [ -z "$nv" ] || [ -e "$site/nvidia" ] || ln -s "$nv/nvidia" "$site/nvidia"
    touch "$site/.tiny-llm-installed"
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
export TINY_LLM_PYTHON=$python
# Multicast stays off (KINDS.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

xtask=$root/target/debug/xtask
run() {
    local name=$1
    shift
    echo "\$ $*" | tee "$logs/$name.txt"
    set +e
    "$@" 2>&1 | tee -a "$logs/$name.txt"
    local rc=${PIPESTATUS[0]}
    set -e
    echo "exit $rc" | tee -a "$logs/$name.txt"
    return "$rc"
}

# check / check-stubs: an optional target first (default week2); its log
# is check-solution[-TARGET].txt / check-stubs[-TARGET].txt.
target=week2
if [ "$step" = check ] || [ "$step" = check-stubs ]; then
    case "${1:-}" in
        day[0-9]* | week[0-9]* | w[0-9]* | all) target=$1; shift ;;
    esac
fi
suffix=
[ "$target" = week2 ] || suffix=-$target

case "$step" in
    receive) echo "parts received and unpacked; LD_LIBRARY_PATH and $site ready" ;;
    check) run "check-solution$suffix" "$xtask" check "$target" --solution --device gpu --no-build "$@" ;;
    check-stubs) run "check-stubs$suffix" "$xtask" check "$target" --device gpu --no-build "$@" ;;
    bench)
        run bench-week2-gpu "$xtask" bench week2 --device gpu --no-build --synthetic "$@"
        cp -f "$root"/target/bench/week2-gpu.md "$logs"/ 2>/dev/null || true
        ;;
    mutants)
        # Each target/gpu-mutants/NAME is day N's grader tests built with one
        # docs/gpu/mutants/NAME.patch applied; a mutant is caught when a test fails.
        shopt -s nullglob
        ms=("$root"/target/gpu-mutants/*)
        [ ${#ms[@]} -gt 0 ] || { echo "no mutants packed (docs/gpu/mutants/*.patch)" >&2; exit 2; }
        for m in "${ms[@]}"; do
            name=$(basename "$m")
            set +e
            TINY_LLM_DEVICE=gpu "$m" --test-threads=1 > "$logs/mutant-$name.txt" 2>&1
            rc=$?
            set -e
            failed=$(grep -E '^test .* FAILED$' "$logs/mutant-$name.txt" | awk '{print $2}' | tr '\n' ' ' || true)
            if [ "$rc" != 0 ] && [ -n "$failed" ]; then
                echo "$name: caught by $failed" | tee -a "$logs/mutants.txt"
            elif [ "$rc" != 0 ]; then
                echo "$name: the binary failed without a failing test (exit $rc; see mutant-$name.txt)" | tee -a "$logs/mutants.txt"
            else
                echo "$name: SURVIVED (every test passed)" | tee -a "$logs/mutants.txt"
            fi
        done
        ;;
    exec)
        name=${1:?usage: on-device.sh exec NAME CMD [ARGS..]}
        shift
        run "$name" "$@"
        ;;
    *) echo "unknown step $step (receive, check, check-stubs, bench, mutants, exec)" >&2; exit 2 ;;
esac
