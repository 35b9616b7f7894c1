#!/usr/bin/env bash
# Build the libFuzzer harness for the request parsers with clang (ASan and
# UBSan too) and run it for a bounded time on the corpus in the repository.
# A crash, a leak or a sanitizer report fails the test; the input that
# caused it is left in the build folder.
set -euo pipefail
SRC=${VB_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
OUT=${VB_BUILDDIR:-$SRC/build}/fuzz
SECONDS_TO_RUN=${VB_FUZZ_SECONDS:-60}
command -v clang >/dev/null || { echo "clang is not installed"; exit 1; }
mkdir -p "$OUT/new-corpus" "$OUT/artifacts"
bin="$OUT/fuzz-wire"
srcs=("$SRC/tests/fuzz/fuzz-wire.c" "$SRC/hostd/vbackupd/wire.c" "$SRC/hostd/lib/util.c")
if [ ! -x "$bin" ] || [ -n "$(find "${srcs[@]}" "$SRC/include/vbackup/proto.h" -newer "$bin")" ]; then
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -D_GNU_SOURCE -I"$SRC/include" -I"$SRC/hostd/lib" -I"$SRC/hostd/vbackupd" \
        $(pkg-config --cflags glib-2.0) "${srcs[@]}" $(pkg-config --libs glib-2.0) -o "$bin"
fi
set +e
"$bin" -max_total_time="$SECONDS_TO_RUN" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/" "$OUT/new-corpus" "$SRC/tests/fuzz/corpus" > "$OUT/log" 2>&1
status=$?
set -e
grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|.*runtime error)" "$OUT/log" || true
if [ "$status" != 0 ]; then
    tail -40 "$OUT/log"
    echo "FAIL: the fuzzer found a problem (exit $status); the input is in $OUT/artifacts"
    exit 1
fi
echo "ok: fuzzed the request parsers for $SECONDS_TO_RUN s without a finding"
