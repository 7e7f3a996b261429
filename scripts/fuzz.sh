#!/usr/bin/env bash
# Coverage-guided fuzzing of what reads untrusted bytes. The native crate (fuzz/: the bootstrap
# reader, the FUSE request decoder, the chunk decoder) with libFuzzer through cargo-fuzz, on the
# nightly toolchain that comes with rustup; cargo-fuzz (pinned) and the build live in a cache
# OUTSIDE the repository: ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/cargo-fuzz, .../fuzz-target.
# The TypeScript tar reader (target "tar") with our own loop on V8 block coverage (fuzz/js;
# needs `npm run build` first).
#
#   scripts/fuzz.sh --install            install cargo-fuzz and build the targets (setup.sh runs it)
#   scripts/fuzz.sh --runs N [TARGET..]  N executions per target, seeded by the committed corpus
#                                        (new inputs go to a scratch dir: the tree stays clean)
#   scripts/fuzz.sh --seconds S --grow [TARGET..]
#                                        S seconds per target, new inputs kept in fuzz/corpus/<target>
#                                        and the corpus minimized afterwards
# Prints, per target, the executions done, the corpus size and the crashes found; exits non-zero
# on a crash (the input is left in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${NYDUS_TS_CACHE:-/var/cache/nydus-ts}"
CARGO_FUZZ_VERSION=0.13.2
export PATH="$CACHE/cargo-fuzz/bin:$PATH:$HOME/.cargo/bin"
export CARGO_TARGET_DIR="$CACHE/fuzz-target"
TARGETS=(bootstrap fuse_request chunk)
JS_TARGETS=(tar)

install() {
  if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION ..."
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet --root "$CACHE/cargo-fuzz"
  fi
  cargo +nightly fuzz build --release --fuzz-dir fuzz 2>&1 | grep -vE '^\s*(Compiling|Finished|Downloaded|Downloading|Updating|Locking)' || true
  local t
  for t in "${TARGETS[@]}"; do
    [ -x "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" ] || { echo "fuzz: target $t did not build" >&2; exit 1; }
  done
}

mode=runs; amount=20000; grow=0; targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install; echo "fuzz: ready"; exit 0 ;;
    --runs) mode=runs; amount="$2"; shift 2 ;;
    --seconds) mode=seconds; amount="$2"; shift 2 ;;
    --grow) grow=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}" "${JS_TARGETS[@]}")

failed=0
installed=0
for t in "${targets[@]}"; do
  if [[ " ${JS_TARGETS[*]} " == *" $t "* ]]; then
    [ -f fuzz/dist/run.js ] || { echo "fuzz: fuzz/dist/run.js missing; run npm run build first" >&2; exit 1; }
    args=("$([ "$mode" = runs ] && echo --runs || echo --seconds)" "$amount")
    [ "$grow" = 1 ] && args+=(--grow)
    # A synchronous endless loop stops the fuzzer's own watchdog; this one catches it.
    limit=$([ "$mode" = runs ] && echo 3600 || echo $((amount + 600)))
    timeout "$limit" node fuzz/dist/run.js "${args[@]}" "$t" || { echo "fuzz $t: CRASH, hang or error (see above)" >&2; failed=1; }
    continue
  fi
  [ "$installed" = 1 ] || { install >/dev/null; installed=1; }
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  if [ "$grow" = 1 ]; then dirs=("$corpus"); else scratch=$(mktemp -d); dirs=("$scratch" "$corpus"); fi
  limit=$([ "$mode" = runs ] && echo "-runs=$amount" || echo "-max_total_time=$amount")
  log=$(mktemp)
  # -rss_limit_mb: the bootstrap reader may allocate what a hostile image claims, within bounds.
  if cargo +nightly fuzz run --release --fuzz-dir fuzz "$t" "${dirs[@]}" -- "$limit" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    status="0 crashes"
  else
    status="CRASH (see fuzz/artifacts/$t and the log below)"; failed=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  if [ "$grow" = 1 ]; then
    cargo +nightly fuzz cmin --release --fuzz-dir fuzz "$t" "$corpus" >/dev/null 2>&1 || true
  else
    rm -rf "$scratch"
  fi
  echo "fuzz $t: ${execs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs, $status"
  rm -f "$log"
done
exit $failed
