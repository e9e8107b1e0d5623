#!/bin/bash
# Times, in one run, examples/live-minimal.yaml built on three "machines"
# (each its own stage cache and native package cache) sharing one local
# OCI registry (Debian's docker-registry on 127.0.0.1):
#   first  empty caches, pushing to the empty registry (fills it)
#   cold   empty caches, no remote cache (--remote-cache off)
#   warm   empty caches, the registry warm: what a second machine pays
# each under /usr/bin/time -v (wall clock, CPU, peak RSS of the largest
# process), with the load average. Needs root and docker-registry.
# Usage: bench/remote-cache.sh [ROUNDS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
make -s vmdeb
command -v docker-registry >/dev/null || { echo "docker-registry is missing (make deps)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/vmdeb-bench-rc-XXXXXX)
reg_pid=
cleanup() {
	if [ -n "$reg_pid" ]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
# One source date for every build: it is part of the packages stage's key.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do
	curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
	sleep 0.2
done
curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || { echo "the registry did not start:"; cat "$work/registry.log"; exit 1; } >&2

# build NAME REMOTE: one timed build on a new machine (empty caches).
build() {
	local name=$1 remote=$2 m=$work/$1 cfg t
	mkdir -p "$m"
	cp -a examples "$m/src"
	cfg=$m/src/live-minimal.yaml
	sed -i "s|^bootstrap: native.*|&\ncache: $m/debs|" "$cfg"
	t=$m/time
	/usr/bin/time -v -o "$t" ./vmdeb build --remote-cache "$remote" --stage-cache "$m/stages" \
		--outdir "$m/out" --workdir "$work" --log "$m/build.log" "$cfg" >/dev/null
	awk -v name="$name" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
		/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); wall = (n == 3) ? p[1]*3600 + p[2]*60 + p[3] : p[1]*60 + p[2] }
		/User time/ { user = $NF } /System time/ { sys = $NF }
		/Maximum resident set size/ { rss = $NF }
		END { printf "%-6s wall %7.1f s  cpu %7.1f s (user %.1f, sys %.1f)  peak RSS %4d MiB  load after %s\n", name, wall, user + sys, user, sys, rss / 1024, load }' "$t"
	grep -E '^time |^remote cache: .*(pulled|pushed)|^WARNING: remote cache' "$m/build.log" | sed 's/^/    /'
	rm -rf "$m/src" "$m/out"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$rounds"); do
	rm -rf "$work/registry" "$work"/first "$work"/cold "$work"/warm
	echo "round $i"
	build first "oci://127.0.0.1:$port/vmdeb/bench"
	build cold off
	build warm "oci://127.0.0.1:$port/vmdeb/bench"
done
echo "registry: $(du -sh "$work/registry" | cut -f1)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
