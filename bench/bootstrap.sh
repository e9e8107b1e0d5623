#!/bin/bash
# Times the base-system bootstrappers, alternating, in one run, each round:
#  - minbase: debootstrap, vmdeb's native bootstrapper with an empty
#    package cache (native-cold), mmdebstrap, the native bootstrapper with
#    the cache the cold run filled (native-warm); each makes a directory
#    from the host's mirror;
#  - live: the full `vmdeb build examples/live-minimal.yaml` with the
#    debootstrap backend (live-debootstrap), with the native backend and an
#    empty package cache (live-native-cold), and with the native backend
#    and the cache that build filled (live-native-warm).
# Needs root. PARTS is minbase, live or all (default).
# Usage: bench/bootstrap.sh [ROUNDS] [SUITE] [PARTS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
suite=${2:-trixie}
parts=${3:-all}
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

# The live builds: copies of the bundled example differing only in the
# backend (and, for the native one, a package cache of this run's own).
cp -a examples "$work/examples"
for backend in debootstrap native; do
	sed '/^bootstrap:/d; s/^variant: \(.*\)$/variant: \1\nbootstrap: '$backend'/' examples/live-minimal.yaml >"$work/examples/live-$backend.yaml"
done
echo "cache: $work/live-cache" >>"$work/examples/live-native.yaml"
grep -q '^bootstrap: debootstrap$' "$work/examples/live-debootstrap.yaml"
grep -q '^bootstrap: native$' "$work/examples/live-native.yaml"
# A stage cache would reuse the previous build's work: every build here
# must do all of it.
buildflags=()
if ./vmdeb build --help | grep -q -- '--no-cache'; then
	buildflags+=(--no-cache)
fi

declare -A times stages
secs() { awk "BEGIN{printf \"%.1f\", $2-$1}"; }
run() { # NAME COMMAND...: time one bootstrap into a fresh directory
	local name=$1 t0 t1
	shift
	rm -rf "$work/root"
	mkdir "$work/root"
	t0=$(date +%s.%N)
	"$@" >"$work/$name.log" 2>&1 || { echo "$name failed, see below" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
	t1=$(date +%s.%N)
	times[$name]+="$(secs "$t0" "$t1") "
	printf '%-18s %6.1f s  (%s packages, load %s)\n' "$name" "$(secs "$t0" "$t1")" "$(chroot "$work/root" dpkg-query -W | wc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
}
native() {
	VMDEB_BENCH_TARGET=$work/root VMDEB_BENCH_CACHE=$work/cache VMDEB_BENCH_MIRROR=$mirror VMDEB_BENCH_SUITE=$suite \
		"$work/native.test" -test.run '^TestBenchBootstrap$' -test.count=1
}
live() { # NAME BACKEND: time one full build of live-minimal
	local name=$1 t0 t1 log=$work/$1.build.log
	rm -rf "$work/out"
	t0=$(date +%s.%N)
	./vmdeb build "${buildflags[@]}" --outdir "$work/out" --workdir "$work" --log "$log" "$work/examples/live-$2.yaml" >"$work/$name.out" 2>&1 ||
		{ echo "$name failed, see below" >&2; tail -20 "$work/$name.out" >&2; exit 1; }
	t1=$(date +%s.%N)
	times[$name]+="$(secs "$t0" "$t1") "
	local st
	st=$(sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2/p' "$log")
	stages[$name]+="$(echo "$st" | awk '{printf "%s=%s ", $1, $2}')"
	printf '%-18s %6.1f s  (%s, load %s)\n' "$name" "$(secs "$t0" "$t1")" "$(echo $st)" "$(cut -d' ' -f1 /proc/loadavg)"
}
for i in $(seq "$rounds"); do
	echo "round $i (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if [ "$parts" != live ]; then
		run debootstrap debootstrap --variant=minbase "$suite" "$work/root" "$mirror"
		rm -rf "$work/cache"
		run native-cold native
		run mmdebstrap mmdebstrap --variant=minbase --quiet "$suite" "$work/root" "$mirror"
		run native-warm native
	fi
	if [ "$parts" != minbase ]; then
		live live-debootstrap debootstrap
		rm -rf "$work/live-cache"
		live live-native-cold native
		live live-native-warm native
	fi
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
table() { # TITLE BASELINE NAME...
	local title=$1 base=$2 m b
	shift 2
	b=$(echo "${times[$base]}" | median)
	echo
	echo "| $title, $rounds rounds | runs (s) | median (s) | ÷ $base |"
	echo "|---|---|---|---|"
	for name in "$@"; do
		m=$(echo "${times[$name]}" | median)
		printf '| %s | %s | %s | %.2f |\n' "$name" "$(echo ${times[$name]})" "$m" "$(awk "BEGIN{print $m/$b}")"
	done
}
if [ "$parts" != live ]; then
	table "$suite minbase" mmdebstrap debootstrap mmdebstrap native-cold native-warm
fi
if [ "$parts" != minbase ]; then
	table "live-minimal" live-debootstrap live-debootstrap live-native-cold live-native-warm
	# Median of each stage, from the build logs.
	names=(live-debootstrap live-native-cold live-native-warm)
	echo
	header="| median stage time (s) |"
	for name in "${names[@]}"; do
		header+=" $name |"
	done
	echo "$header"
	echo "|---|---|---|---|"
	for stage in bootstrap chroot packages system customise finalise live-iso report; do
		row="| $stage"
		for name in "${names[@]}"; do
			row+=" | $(echo "${stages[$name]}" | tr ' ' '\n' | sed -n "s/^$stage=//p" | median)"
		done
		echo "$row |"
	done
fi
