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
# Usage: [ONLY=set|alone] [KEEP=DIR] [DROP_ISOS=1] bench/set.sh [CONFIG...]
#   (default: the eight amd64 images of configs/, which takes hours;
#   results: docs/benchmarks.md)
#   ONLY=set or ONLY=alone runs one half (the eight images' two halves do
#   not fit in one sitting here); KEEP=DIR keeps each build's JSON report
#   (docs/json.md: stage times, cache actions, outputs with their sizes and
#   digests), log and package manifest in DIR; DROP_ISOS=1 empties each
#   ISO once its build has written its report (its size and SHA256 are in
#   the report): the eight desktop-sized images, their stage cache, block
#   cache, package cache and work trees together need more disk than a
#   small builder has.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	set -- configs/*.yaml
fi
only=${ONLY:-}
case $only in '' | set | alone) ;; *) echo "ONLY must be set or alone, not $only" >&2; exit 2 ;; esac
keep=${KEEP:-}
[ -z "$keep" ] || mkdir -p "$keep"
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-set-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# The load average once a minute, for the record.
(while sleep 60; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg) $(df -h --output=avail /var/tmp | tail -1)"; done >"$work/load") &

# dropisos DIR: empties each DIR/out ISO whose report is in DIR/reports
# (the bench measures the time to write it, not the disk it keeps).
dropisos() {
	while sleep 10; do
		for r in "$1"/reports/*.json; do
			[ -e "$r" ] || continue
			for iso in $(jq -r '.outputs[]? | select(.type == "live-iso") | .path' "$r"); do
				if [ -s "$iso" ]; then truncate -s 0 "$iso"; fi
			done
		done
	done
}

# keepreports NAME DIR: copies DIR's reports and logs into $keep/NAME.
keepreports() {
	[ -n "$keep" ] || return 0
	mkdir -p "$keep/$1"
	cp "$2"/reports/*.json "$2"/out/*.build.log "$2"/out/*.packages "$keep/$1/" 2>/dev/null || true
}

# copytree NAME: a copy of configs/ and examples/ whose configs use the
# package cache $work/NAME/debs (empty); prints its directory.
copytree() {
	local d=$work/$1
	mkdir -p "$d/debs" "$d/reports"
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
		{ tail -30 "$work/$name.out"; failed=1; }
	awk -v n="$name" '
		/Elapsed \(wall clock\)/ { split($NF, t, ":"); wall = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] }
		/User time/ { u = $NF } /System time/ { s = $NF } /Maximum resident/ { m = $NF / 1024 }
		END { printf "%-28s wall %7.1f s  cpu %7.1f s  peak %6.0f MiB\n", n, wall, u + s, m }' "$work/$name.time"
}

# stages LOG: the stage times a build log ends with, on one line.
stages() {
	[ -e "$1" ] || return 0
	printf '    %s: ' "$(basename "$1" .build.log)"
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2 /p' "$1" | tr -d '\n'
	echo
}

# drop DIR: starts dropisos DIR in the background when DROP_ISOS=1.
drop() {
	if [ "${DROP_ISOS:-}" = 1 ]; then
		dropisos "$1" &
		dropper=$!
	fi
}
undrop() { [ -z "${dropper:-}" ] || kill "$dropper" 2>/dev/null || true; dropper=; }
failed=0

echo "$*; $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
if [ "$only" != alone ]; then
	d=$(copytree set)
	drop "$d"
	# --report names a directory for several configs, a file for one.
	rep=$d/reports
	[ $# -gt 1 ] || rep=$d/reports/$(basename "$1" .yaml).json
	timed set --stage-cache "$d/stages" --outdir "$d/out" --workdir "$work" --report "$rep" "${@/#/$d/}"
	undrop
	for l in "$d"/out/*.build.log; do stages "$l"; done
	sed -n '/^CONFIG/,$p' "$work/set.out"
	# Separately: du counts a directory once, and skips an argument
	# inside one it already went through.
	for p in "$d/stages/squashfs-blocks" "$d/debs"; do du -sh "$p"; done 2>/dev/null | sed 's/^/    disk: /' || true
	du -sh --exclude=squashfs-blocks "$d/stages" 2>/dev/null | sed 's/^/    disk: stage entries: /' || true
	keepreports set "$d"
	rm -rf "$d"
	[ "$failed" = 0 ] || exit 1
fi
if [ "$only" != set ]; then
	i=0
	for c in "$@"; do
		i=$((i + 1))
		d=$(copytree alone-$i)
		drop "$d"
		timed "alone $(basename "$c" .yaml)" --stage-cache "$d/stages" --outdir "$d/out" --workdir "$work" --report "$d/reports/$(basename "$c" .yaml).json" "$d/$c"
		undrop
		for l in "$d"/out/*.build.log; do stages "$l"; done
		keepreports "alone-$(basename "$c" .yaml)" "$d"
		rm -rf "$d"
		[ "$failed" = 0 ] || exit 1
	done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
echo "load and free disk, once a minute:"
cat "$work/load"
[ -z "$keep" ] || cp "$work/load" "$keep/load"
