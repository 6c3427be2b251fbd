#!/usr/bin/env bash
# Run the kernel tests with the Cython kernels built under AddressSanitizer.
#
# The repository is copied to a temporary directory and the kernels are rebuilt
# there (in place in the copy), so the working tree and its compiled modules are
# never touched.  See doc/sanitizers.md.
#
# Usage:  tools/run_sanitizers.sh [asan|valgrind] [pytest args...]
#   asan      (default) compile with -fsanitize=address and LD_PRELOAD libasan
#   valgrind  compile normally (-O1 -g) and run the tests under valgrind memcheck
# Environment:
#   KEEP=1            keep the temporary copy (its path is printed)
#   SANITIZER_TESTS   test files to run (default: every kernel test file present)
#   PYTHON            interpreter (default: python)
#   CC                compiler (default: gcc)
#   ALLOW_SERIAL=1    accept a sanitized build without OpenMP
set -euo pipefail

MODE="${1:-asan}"
if [[ "$MODE" == "asan" || "$MODE" == "valgrind" ]]; then shift || true; else MODE=asan; fi
PYTHON="${PYTHON:-python}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/neonlearn-${MODE}.XXXXXX")"
cleanup() { if [[ "${KEEP:-0}" == "1" ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

echo "== copying $REPO to $WORK (sources only)"
# tracked and untracked-but-not-ignored files: no build/, *.so or generated *.c
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$REPO" && xargs -0 cp --parents -t "$WORK" 2>/dev/null || true)
cd "$WORK"

CC_="${CC:-gcc}"
if [[ "$MODE" == "asan" ]]; then
    LIBASAN="$("$CC_" -print-file-name=libasan.so)"
    if [[ ! -e "$LIBASAN" ]]; then
        echo "libasan.so not found for $CC_; install the compiler's ASan runtime" >&2
        exit 2
    fi
    # in CC, not only CFLAGS/LDFLAGS: setup.py links a test program to detect OpenMP,
    # and distutils links executables with $CC alone (without it the test fails and
    # the kernels are silently built serially)
    export CC="$CC_ -fsanitize=address -fno-omit-frame-pointer"
    export CFLAGS="-g -O1"
    export LDFLAGS="-fsanitize=address"
else
    export CFLAGS="-g -O1 -fno-omit-frame-pointer"
fi

echo "== building the kernels ($MODE) in the copy"
# -O3 from setup.py comes last; keep -g so reports have line numbers
"$PYTHON" setup.py -q build_ext --inplace -j "$(nproc)" >build.log 2>&1 || {
    tail -50 build.log; echo "build failed" >&2; exit 2; }
if grep -q "built without OpenMP" build.log && [[ "${ALLOW_SERIAL:-0}" != "1" ]]; then
    grep -A2 "OpenMP" build.log | head -5
    echo "the sanitized kernels were built without OpenMP, so their parallel code would" \
         "not be checked; fix the toolchain or set ALLOW_SERIAL=1" >&2
    exit 2
fi

# the tests must import the copy, not the working tree or an installed neonlearn
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
# (find_spec: importing the kernels without the ASan runtime preloaded would abort)
where="$("$PYTHON" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("neonlearn").origin))')"
if [[ "$where" != "$WORK/neonlearn" ]]; then
    echo "imports $where instead of the sanitized copy" >&2; exit 2
fi

if [[ -n "${SANITIZER_TESTS:-}" ]]; then
    read -r -a TESTS <<<"$SANITIZER_TESTS"
else
    TESTS=()
    for f in tests/kernels/test_dense_kernels.py tests/layers/test_conv*.py tests/layers/test_pooling.py \
             tests/layers/test_lrn.py tests/layers/test_recurrent.py tests/layers/test_embedding.py \
             tests/layers/test_containers.py tests/test_fuzz.py tests/test_numerics.py; do
        [[ -e "$f" ]] && TESTS+=("$f")
    done
fi
echo "== running ${TESTS[*]}"

set +e
if [[ "$MODE" == "asan" ]]; then
    # Python itself is not instrumented: preload the runtime, skip leak checks
    # (CPython keeps many allocations until exit) and stop at the first error.
    LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:symbolize=1:${ASAN_OPTIONS:-}" \
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
        "$PYTHON" -m pytest -q -p no:cacheprovider -x "${TESTS[@]}" "$@" 2>&1 | tee asan.log
    rc=${PIPESTATUS[0]}
    if grep -q "ERROR: AddressSanitizer" asan.log; then
        echo "== AddressSanitizer reported errors (see above)"; rc=1
    fi
else
    PYTHONMALLOC=malloc OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
    valgrind --tool=memcheck --error-exitcode=99 --track-origins=no \
        --leak-check=no \
        "$PYTHON" -m pytest -q -p no:cacheprovider -x "${TESTS[@]}" "$@" 2>&1 | tee valgrind.log
    rc=${PIPESTATUS[0]}
fi
exit $rc
