#!/bin/bash
# Times the bootstrap and packages stages of a config (configs/standard.yaml
# by default; its outputs replaced by a directory, so no squashfs is made)
# next to mmdebstrap installing the same packages, alternating, in one run.
# With OLD=REV, vmdeb built from git revision REV runs too (on that
# revision's copy of the config, the same mirror, caches off), to show what
# a change did. Each round ends with the packages one image has and another
# lacks (old and new vmdeb, vmdeb and mmdebstrap). Needs root.
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
# dircfg DIR NAME: a copy of the config's directory from DIR (this tree,
# or the old revision's, whose configs go with its vmdeb) with the
# config's outputs replaced by a directory; prints the config's path.
src=$(dirname "$cfg")
dircfg() {
	cp -a "$1/$src" "$work/$2"
	local f=$work/$2/$(basename "$cfg")
	sed -i '/^outputs:/,$d' "$f"
	printf 'outputs:\n  - type: directory\n    path: %s\n' "$work/out/root" >>"$f"
	echo "$f"
}
c=$(dircfg . cfg-new)
[ -z "${OLD:-}" ] || c_old=$(dircfg "$work/old-src" cfg-old)

plan=$(./vmdeb check --json --offline "$c")
field() { python3 -c 'import json,sys; p=json.load(sys.stdin)["plan"]; v=p[sys.argv[1]]; print(",".join(v) if isinstance(v, list) else v)' "$1" <<<"$plan"; }
mirror=$(field mirror) suite=$(field suite) arch=$(field architecture) pkgs=$(field packages)
# The components as the config gives them, its includes merged.
check=$(./vmdeb check --json --offline "$c")
comps=$(python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)["config"]["components"] or ["main"]))' <<<"$check")
# The config's debconf answers, given to mmdebstrap too (before its packages).
hooks=()
while IFS= read -r a; do
	[ -z "$a" ] || hooks+=("--essential-hook=echo '$a' | chroot \"\$1\" debconf-set-selections")
done < <(python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["config"]["debconf"] or []))' <<<"$check")
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
	local cf=$c
	[ "$b" = new ] || cf=$c_old
	timed "vmdeb-$b" "$work/vmdeb-$b" build --no-cache --workdir "$work/w" --log "$log" "$cf"
	printf '  stages:'
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/ \1 \2/p' "$log" | tr -d '\n'
	printf '  initramfs made %d times\n' "$(grep -c 'update-initramfs: Generating' "$log")"
	dpkg-query --admindir="$work/out/root/var/lib/dpkg" -W -f '${Package}\n' | sort >"$work/$b.pkgs"
}

# differ A B: the packages one image has and the other lacks.
differ() {
	printf '  packages in %s, not in %s (%d): %s\n' "$1" "$2" "$(comm -23 "$work/$1.pkgs" "$work/$2.pkgs" | wc -l)" \
		"$(comm -23 "$work/$1.pkgs" "$work/$2.pkgs" | tr '\n' ' ')"
}

mmdebstrap_run() {
	rm -rf "$work/mm"
	timed mmdebstrap mmdebstrap --variant=minbase --components="$comps" --arch="$arch" --include="$pkgs" "${hooks[@]}" \
		--aptopt='APT::Install-Recommends "true"' "$suite" "$work/mm" "$mirror"
	printf '  initramfs made %d times\n' "$(grep -c 'update-initramfs: Generating' "$work/mmdebstrap.out")"
	dpkg-query --admindir="$work/mm/var/lib/dpkg" -W -f '${Package}\n' | sort >"$work/mmdebstrap.pkgs"
}

for i in $(seq "$rounds"); do
	echo "round $i, load $(cut -d' ' -f1-3 /proc/loadavg)"
	for b in "${bins[@]}"; do vmdeb_run "$b"; done
	mmdebstrap_run
	if [ -n "${OLD:-}" ]; then differ old new; differ new old; fi
	differ new mmdebstrap
	differ mmdebstrap new
done
