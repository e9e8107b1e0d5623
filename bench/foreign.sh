#!/bin/bash
# Times `vmdeb build examples/live-arm64.yaml` (an arm64 live ISO, every
# arm64 program run through qemu-user) next to `mmdebstrap
# --architectures=arm64` making a root directory of the same package set,
# in one run, the order alternating from round to round (vmdeb first in odd
# rounds). The package set is the one vmdeb installed: its NAME.packages
# manifest from round 1, passed whole to mmdebstrap's --include with
# Recommends off, so both end with the same packages (the script checks).
# vmdeb builds with --no-cache: every round does all the work, as mmdebstrap
# does. Needs root, binfmt_misc and the qemu-user handlers (make deps).
# Usage: bench/foreign.sh [ROUNDS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
config=examples/live-arm64.yaml
name=debian-live-minimal-arm64
suite=trixie

[ "$(id -u)" = 0 ] || { echo "bench/foreign.sh: run as root" >&2; exit 2; }
if ! command -v mmdebstrap >/dev/null; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
fi
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
make -s vmdeb

work=$(mktemp -d /var/tmp/vmdeb-bench-foreign-XXXXXX)
trap 'for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done; rm -rf "$work"' EXIT
# Every round runs this copy, whatever happens to ./vmdeb meanwhile.
cp vmdeb "$work/vmdeb"
# The mirror vmdeb itself detected from the host's apt sources.
mirror=$("$work/vmdeb" check --offline "$config" | sed -n 's/.*mirror \([^,]*\),.*/\1/p')
[ -n "$mirror" ] || { echo "bench/foreign.sh: no mirror from vmdeb check" >&2; exit 1; }

now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.1f\", $(now)-$1}"; }
load() { cut -d' ' -f1 /proc/loadavg; }

pkgs=
vmdeb_t=()
mm_t=()
vmdeb_run() {
	local t t0 log=$work/vmdeb-$1.log l0 stages
	rm -rf "$work/out"
	l0=$(load)
	t0=$(now)
	"$work/vmdeb" build --no-cache --outdir "$work/out" --workdir "$work" --log "$log" "$config" >/dev/null
	t=$(since "$t0")
	vmdeb_t+=("$t")
	printf 'round %s vmdeb      total %7s  load %s -> %s  stages:' "$1" "$t" "$l0" "$(load)"
	stages=$(sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/ \1 \2/p' "$log" | tr -d '\n')
	echo "$stages"
	if [ -z "$pkgs" ]; then
		pkgs=$(cut -f1 "$work/out/$name.packages" | paste -sd,)
		echo "package set: $(wc -l <"$work/out/$name.packages") packages (from $name.packages)"
	fi
}

mmdebstrap_run() {
	local t t0 l0 got
	rm -rf "$work/mm"
	l0=$(load)
	t0=$(now)
	if ! mmdebstrap --quiet --mode=root --architectures=arm64 --variant=minbase \
		--aptopt='APT::Install-Recommends "false"' --include="$pkgs" \
		"$suite" "$work/mm" "$mirror" 2>"$work/mmdebstrap-$1.log"; then
		tail -n 30 "$work/mmdebstrap-$1.log" >&2
		exit 1
	fi
	t=$(since "$t0")
	mm_t+=("$t")
	printf 'round %s mmdebstrap total %7s  load %s -> %s\n' "$1" "$t" "$l0" "$(load)"
	got=$(dpkg-query --admindir="$work/mm/var/lib/dpkg" -W -f '${db:Status-Abbrev}\n' | grep -c '^ii')
	[ "$got" = "$(tr ',' '\n' <<<"$pkgs" | wc -l)" ] ||
		echo "warning: mmdebstrap installed $got packages, vmdeb $(tr ',' '\n' <<<"$pkgs" | wc -l)"
}

echo "$(date -u +%FT%TZ) $(nproc) cores, $(uname -r), vmdeb $(git describe --always --dirty), $(mmdebstrap --version)"
for i in $(seq "$rounds"); do
	if [ $((i % 2)) = 1 ]; then
		vmdeb_run "$i"
		mmdebstrap_run "$i"
	else
		mmdebstrap_run "$i"
		vmdeb_run "$i"
	fi
done

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{printf "%.1f", NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
mv=$(median "${vmdeb_t[@]}")
mm=$(median "${mm_t[@]}")
echo "median: vmdeb $mv s, mmdebstrap $mm s, vmdeb / mmdebstrap $(awk "BEGIN{printf \"%.2f\", $mv/$mm}")"
