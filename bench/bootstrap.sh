#!/bin/bash
# Times the base-system bootstrappers on one suite's minbase, alternating,
# in one run: debootstrap, mmdebstrap, and vmdeb's native bootstrapper with
# an empty package cache (cold) and with the cache the cold run filled
# (warm). Each makes a directory from the host's mirror. Needs root.
# Usage: bench/bootstrap.sh [ROUNDS] [SUITE]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
suite=${2:-trixie}
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
for tool in debootstrap mmdebstrap; do
	command -v $tool >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-boot-XXXXXX)
trap 'for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done; rm -rf "$work"' EXIT

# The host's mirror, as vmdeb reads it (never written down here).
cat > "$work/probe.yaml" <<YAML
name: probe
suite: $suite
architecture: amd64
kernel: none
outputs: [{type: directory, path: $work/probe-out}]
YAML
mirror=$(./vmdeb check --offline "$work/probe.yaml" | sed -n 's/.*mirror \([^,]*\),.*/\1/p')
# The native bootstrapper alone: the package's test binary has an entry
# point for it (TestBenchBootstrap), run in its own namespaces.
go test -c -o "$work/native.test" ./internal/bootstrap

declare -A times
run() { # NAME COMMAND...: time one bootstrap into a fresh directory
	local name=$1 t0 t1
	shift
	rm -rf "$work/root"
	mkdir "$work/root"
	t0=$(date +%s.%N)
	"$@" >"$work/$name.log" 2>&1 || { echo "$name failed, see below" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
	t1=$(date +%s.%N)
	times[$name]+="$(awk "BEGIN{printf \"%.1f\", $t1-$t0}") "
	printf '%-12s %6.1f s  (%s packages)\n' "$name" "$(awk "BEGIN{print $t1-$t0}")" "$(chroot "$work/root" dpkg-query -W | wc -l)"
}
native() {
	VMDEB_BENCH_TARGET=$work/root VMDEB_BENCH_CACHE=$work/cache VMDEB_BENCH_MIRROR=$mirror VMDEB_BENCH_SUITE=$suite \
		"$work/native.test" -test.run '^TestBenchBootstrap$' -test.count=1
}
for i in $(seq "$rounds"); do
	echo "round $i (load $(cut -d' ' -f1-3 /proc/loadavg))"
	run debootstrap debootstrap --variant=minbase "$suite" "$work/root" "$mirror"
	rm -rf "$work/cache"
	run native-cold native
	run mmdebstrap mmdebstrap --variant=minbase --quiet "$suite" "$work/root" "$mirror"
	run native-warm native
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mm=$(echo "${times[mmdebstrap]}" | median)
echo
echo "| $suite minbase, $rounds rounds | runs (s) | median (s) | ÷ mmdebstrap |"
echo "|---|---|---|---|"
for name in debootstrap mmdebstrap native-cold native-warm; do
	m=$(echo "${times[$name]}" | median)
	printf '| %s | %s | %s | %.2f |\n' "$name" "$(echo ${times[$name]})" "$m" "$(awk "BEGIN{print $m/$mm}")"
done
