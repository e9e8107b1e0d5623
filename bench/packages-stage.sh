#!/bin/bash
# Times the bootstrap and packages stages of a config (configs/standard.yaml
# by default; its outputs replaced by a directory, so no squashfs is made)
# next to mmdebstrap installing the same packages, alternating, in one run.
# With OLD=REV, vmdeb built from git revision REV runs too (the same config,
# the same mirror, caches off), to show what a change did. Needs root.
# Usage: [OLD=REV] bench/packages-stage.sh [CONFIG] [ROUNDS]
#        (results: docs/benchmarks.md, "Packages stage")
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:-configs/standard.yaml}
rounds=${2:-1}
command -v mmdebstrap >/dev/null || { echo "bench/packages-stage.sh: needs mmdebstrap: apt-get install mmdebstrap" >&2; exit 2; }
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-pkgs-XXXXXX)
cleanup() {
	for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done
	[ -z "${OLD:-}" ] || git worktree remove --force "$work/old-src" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

bins=(new)
cp vmdeb "$work/vmdeb-new"
if [ -n "${OLD:-}" ]; then
	git worktree add --quiet --detach "$work/old-src" "$OLD"
	(cd "$work/old-src" && go build -o "$work/vmdeb-old" ./cmd/vmdeb)
	bins=(old new)
fi

# The config beside its includes and hooks, with a directory output.
src=$(dirname "$cfg")
cp -a "$src" "$work/cfg"
c=$work/cfg/$(basename "$cfg")
sed -i '/^outputs:/,$d' "$c"
printf 'outputs:\n  - type: directory\n    path: %s\n' "$work/out/root" >>"$c"

plan=$(./vmdeb check --json --offline "$c")
field() { python3 -c 'import json,sys; p=json.load(sys.stdin)["plan"]; v=p[sys.argv[1]]; print(",".join(v) if isinstance(v, list) else v)' "$1" <<<"$plan"; }
mirror=$(field mirror) suite=$(field suite) arch=$(field architecture) pkgs=$(field packages)
comps=$(sed -n 's/^components: *\[\(.*\)\]/\1/p' "$c" "$src"/base/*.yaml 2>/dev/null | head -1 | tr -d ' ')
comps=${comps:-main}
echo "config $cfg: $suite $arch, components $comps, packages $pkgs; load $(cut -d' ' -f1-3 /proc/loadavg)"

timed() { # NAME CMD...: runs CMD under /usr/bin/time -v, prints wall, CPU, peak RSS
	local name=$1 t=$work/time.$1; shift
	/usr/bin/time -v -o "$t" "$@" >"$work/$name.out" 2>&1 || { tail -20 "$work/$name.out"; exit 1; }
	awk -v n="$name" -F': ' '/Elapsed/{w=$2} /User time/{u=$2} /System time/{s=$2} /Maximum resident/{m=$2}
		END{printf "%-10s wall %s  cpu %.1fs  peak %.0f MiB", n, w, u+s, m/1024}' "$t"
}

vmdeb_run() {
	local b=$1 log=$work/$1.log
	rm -rf "$work/out" "$work/w"; mkdir -p "$work/w"
	timed "vmdeb-$b" "$work/vmdeb-$b" build --no-cache --workdir "$work/w" --log "$log" "$c"
	printf '  stages:'
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/ \1 \2/p' "$log" | tr -d '\n'
	printf '  initramfs made %d times\n' "$(grep -c 'update-initramfs: Generating' "$log")"
}

mmdebstrap_run() {
	rm -rf "$work/mm"
	timed mmdebstrap mmdebstrap --variant=minbase --components="$comps" --arch="$arch" --include="$pkgs" \
		--aptopt='APT::Install-Recommends "true"' "$suite" "$work/mm" "$mirror"
	printf '  initramfs made %d times\n' "$(grep -c 'update-initramfs: Generating' "$work/mmdebstrap.out")"
}

for i in $(seq "$rounds"); do
	echo "round $i, load $(cut -d' ' -f1-3 /proc/loadavg)"
	for b in "${bins[@]}"; do vmdeb_run "$b"; done
	mmdebstrap_run
done
