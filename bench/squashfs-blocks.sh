#!/bin/bash
# Times the squashfs step on one root file system, side by side in one
# run: mksquashfs alone (what vmdeb did before the block cache, and what
# live-build does), vmdeb's path through an empty block cache (a cold
# build), and through the filled cache after a hook-like change (one small
# file written, one file of a few blocks changed). For each compressor:
# wall and CPU time, peak memory (/usr/bin/time -v) and the image's size.
# Needs root (the tree keeps its owners) and squashfs-tools.
# Usage: bench/squashfs-blocks.sh IMAGE.iso|TREE [COMPRESSORS...]
#   (default compressors: xz zstd; results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$1
shift
comps=${*:-xz zstd}
work=$(mktemp -d /var/tmp/vmdeb-bench-sqfs-XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/sq" ./bench/squashfs

tree=$src
if [ -f "$src" ]; then
	xorriso -osirrox on -indev "$src" -extract /live/filesystem.squashfs "$work/in.sqfs" >/dev/null 2>&1
	unsquashfs -q -no-progress -d "$work/tree" "$work/in.sqfs" >/dev/null
	rm -f "$work/in.sqfs"
	tree=$work/tree
fi
echo "tree: $(du -sh --apparent-size "$tree" | cut -f1), $(find "$tree" | wc -l) entries; $(nproc) CPUs; mksquashfs $(mksquashfs -version | head -1 | cut -d' ' -f3)"

# timed NAME CMD...: one run; wall s, CPU s, peak RSS MiB.
timed() {
	local name=$1
	shift
	sync
	/usr/bin/time -v -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }
	awk -v n="$name" -v extra="$(cat "$work/out")" '
		/Elapsed \(wall clock\)/ { split($NF, t, ":"); wall = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] }
		/User time/ { u = $NF } /System time/ { s = $NF } /Maximum resident/ { m = $NF / 1024 }
		END { printf "%-28s wall %7.1f s  cpu %7.1f s  peak %6.0f MiB  %s\n", n, wall, u + s, m, extra }' "$work/time"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for comp in $comps; do
	rm -rf "$work/cache"
	timed "$comp: mksquashfs alone" "$work/sq" -comp "$comp" "$tree" "$work/plain.sqfs"
	timed "$comp: cold block cache" "$work/sq" -comp "$comp" -cache "$work/cache" "$tree" "$work/cold.sqfs"
	echo "    sizes: mksquashfs $(stat -c %s "$work/plain.sqfs"), via the cache $(stat -c %s "$work/cold.sqfs") bytes ($(awk "BEGIN{printf \"%+.3f\", 100*($(stat -c %s "$work/cold.sqfs")/$(stat -c %s "$work/plain.sqfs")-1)}") %)"
	# A hook's change: a new small file, and a few blocks of a big one.
	echo "bench $comp $RANDOM" >"$tree/etc/bench-mark"
	big=$(find "$tree/usr/lib" -type f -size +2M | sort | head -1)
	cp -p "$big" "$work/big.orig"
	printf 'changed by the benchmark' | dd of="$big" bs=1 seek=300000 conv=notrunc status=none
	timed "$comp: after a hook change" "$work/sq" -comp "$comp" -cache "$work/cache" "$tree" "$work/warm.sqfs"
	cp -p "$work/big.orig" "$big"
	rm -f "$tree/etc/bench-mark"
	timed "$comp: unchanged, warm" "$work/sq" -comp "$comp" -cache "$work/cache" "$tree" "$work/warm2.sqfs"
	cmp -s "$work/cold.sqfs" "$work/warm2.sqfs" && echo "    warm == cold: same bytes" || echo "    warm != cold: THE BYTES DIFFER"
	rm -f "$work"/*.sqfs
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
