#!/bin/bash
# Times a set of images built as a set against the same images built one
# after the other with the caches emptied between them, in one run:
#   set:   one `vmdeb build CONFIG...` into an empty stage cache (so an empty
#          squashfs block cache) and an empty package cache; the images
#          share what they can (bootstrap, downloads, compressed blocks)
#          and overlap (the next prepares while the one before writes its
#          outputs);
#   alone: each config by itself, each into empty caches of its own.
# For each: wall and CPU time and peak memory (/usr/bin/time -v), each
# image's stage times from its build log (for the set, "wait" is the time
# an image waited for its turn to write its outputs). Needs root.
# Usage: bench/set.sh [CONFIG...]   (default: the eight amd64 images of
#   configs/, which takes hours; results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	set -- configs/*.yaml
fi
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-set-XXXXXX)
trap 'rm -rf "$work"' EXIT

# copytree NAME: a copy of configs/ and examples/ whose configs use the
# package cache $work/NAME/debs (empty); prints its directory.
copytree() {
	local d=$work/$1
	mkdir -p "$d/debs"
	cp -a configs examples "$d/"
	find "$d/configs" "$d/examples" -name '*.yaml' -not -path '*/base/*' | while read -r f; do
		grep -q '^cache:' "$f" || printf 'cache: %s\n' "$d/debs" >>"$f"
	done
	echo "$d"
}

# timed NAME ARGS...: vmdeb build ARGS under time -v; prints its totals.
timed() {
	local name=$1
	shift
	sync
	/usr/bin/time -v -o "$work/$name.time" ./vmdeb build "$@" >"$work/$name.out" 2>&1 ||
		{ tail -30 "$work/$name.out"; exit 1; }
	awk -v n="$name" '
		/Elapsed \(wall clock\)/ { split($NF, t, ":"); wall = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] }
		/User time/ { u = $NF } /System time/ { s = $NF } /Maximum resident/ { m = $NF / 1024 }
		END { printf "%-28s wall %7.1f s  cpu %7.1f s  peak %6.0f MiB\n", n, wall, u + s, m }' "$work/$name.time"
}

# stages LOG: the stage times a build log ends with, on one line.
stages() {
	printf '    %s: ' "$(basename "$1" .build.log)"
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2 /p' "$1" | tr -d '\n'
	echo
}

echo "$*; $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
d=$(copytree set)
timed set --stage-cache "$d/stages" --outdir "$d/out" --workdir "$work" "${@/#/$d/}"
for l in "$d"/out/*.build.log; do stages "$l"; done
sed -n '/^CONFIG/,$p' "$work/set.out"
rm -rf "$d"
i=0
for c in "$@"; do
	i=$((i + 1))
	d=$(copytree alone-$i)
	timed "alone $(basename "$c" .yaml)" --stage-cache "$d/stages" --outdir "$d/out" --workdir "$work" "$d/$c"
	for l in "$d"/out/*.build.log; do stages "$l"; done
	rm -rf "$d"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
