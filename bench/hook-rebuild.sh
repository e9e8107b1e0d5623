#!/bin/bash
# Times, in one run, a live image of configs/ built from nothing into an
# empty stage cache (and so an empty squashfs block cache: a cold build),
# then rebuilt after a one-line change to its customisation hook (a
# hook-only rebuild: the packages stage comes from the stage cache, the
# squashfs's unchanged blocks from the block cache). For each: wall and
# CPU time, peak memory of the largest process (/usr/bin/time -v) and
# which programs were largest (ps, sampled twice a second), each stage's
# time from the build log and the block counts from the report.
# The package cache is the machine's, as a user's would be. Needs root.
# Usage: bench/hook-rebuild.sh [CONFIG]   (default configs/standard.yaml;
#   results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/standard.yaml}
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-hook-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a configs "$work/src"
cfg=$work/src/${config#configs/}
hook=$(dirname "$cfg")/$(sed -n 's/^customise: *//p' "$cfg")
[ -f "$hook" ] || { echo "$config: no customise hook found ($hook)" >&2; exit 1; }

# sample FILE: until killed, the largest resident size seen of each
# program (ps every half second), as "KiB NAME" lines in FILE.
sample() {
	declare -A peak
	trap 'for c in "${!peak[@]}"; do echo "${peak[$c]} $c"; done >"$1"; exit 0' TERM
	while :; do
		while read -r rss comm; do
			[ "${peak[$comm]:-0}" -ge "$rss" ] || peak[$comm]=$rss
		done < <(ps -eo rss=,comm=)
		sleep 0.5
	done
}

# build NAME: one timed build into $work/out; its totals, stages, blocks
# and the three programs with the largest resident size.
build() {
	local name=$1 log=$work/$1.log sampler
	sync
	sample "$work/$name.peaks" &
	sampler=$!
	/usr/bin/time -v -o "$work/time" ./vmdeb build --stage-cache "$work/stages" \
		--outdir "$work/out" --workdir "$work" --log "$log" --report "$work/$name.json" "$cfg" >/dev/null
	kill -TERM "$sampler"
	wait "$sampler" || true
	awk -v n="$name" '
		/Elapsed \(wall clock\)/ { split($NF, t, ":"); wall = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] }
		/User time/ { u = $NF } /System time/ { s = $NF } /Maximum resident/ { m = $NF / 1024 }
		END { printf "%-10s wall %7.1f s  cpu %7.1f s  peak %6.0f MiB\n", n, wall, u + s, m }' "$work/time"
	printf '  stages: '
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2 /p' "$log" | tr -d '\n'
	echo
	printf '  squashfs blocks: '
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("cache",{}).get("squashfs_blocks"))' "$work/$name.json"
	printf '  largest processes: '
	sort -rn "$work/$name.peaks" | head -3 | awk '{ printf "%s %.0f MiB  ", $2, $1 / 1024 }'
	echo
	sha256sum "$work"/out/*.iso | sed 's/^\(.\{16\}\)[^ ]* *\(.*\)/  \1…  \2/'
}

echo "$config; $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
build cold
echo "echo hook-only rebuild > \"\$1/etc/vmdeb-bench-mark\"" >>"$hook"
build hook-only
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
