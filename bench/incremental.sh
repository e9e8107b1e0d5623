#!/bin/bash
# Times, in one run, examples/live-minimal.yaml built: from nothing with
# the stage cache off (--no-cache), from nothing filling an empty stage
# cache (full), again after a change to the hook only, and again after a
# change to the package list. Needs root.
# Usage: bench/incremental.sh [ROUNDS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a examples "$work/src"
cfg=$work/src/live-minimal.yaml
hook=$work/src/hooks/minimal.sh
cp "$hook" "$work/hook.orig"
cp "$cfg" "$work/cfg.orig"

# build NAME [vmdeb build options]: one timed build, its stage times.
build() {
	local name=$1 t0 t1 log=$work/$1.log
	shift
	t0=$(date +%s.%N)
	./vmdeb build "$@" --outdir "$work/out" --workdir "$work" --log "$log" "$cfg" >/dev/null
	t1=$(date +%s.%N)
	printf '%-12s total %6.1f  ' "$name" "$(awk "BEGIN{print $t1-$t0}")"
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2 /p' "$log" | tr -d '\n'
	echo
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$rounds"); do
	cp "$work/hook.orig" "$hook"; cp "$work/cfg.orig" "$cfg"
	rm -rf "$work/stages"
	build no-cache --no-cache
	build full --stage-cache "$work/stages"
	echo "echo round $i > \"\$rootfs/etc/bench-mark\"" >> "$hook"
	build hook-only --stage-cache "$work/stages"
	sed -i 's/^  - task-english.*/&\n  - less/' "$cfg"
	build packages --stage-cache "$work/stages"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
