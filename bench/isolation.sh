#!/bin/bash
# Times one small config (trixie minbase, native bootstrap, no kernel, a
# tarball) built three ways in one run: as root on the host, rootless (an
# unprivileged user in a user namespace), and in the builder VM (KVM or
# TCG, as vmdeb decides; the builder image is made first and timed on its
# own). Every build starts from nothing but the shared package cache,
# which a first untimed build fills.
# Needs root (it runs the rootless build as the user vmdeb-test, created
# with a subordinate id range when missing).
# Usage: bench/isolation.sh [ROUNDS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-iso-XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
user=vmdeb-test
if ! id "$user" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/sh "$user"
fi
grep -q "^$user:" /etc/subuid || usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
cp vmdeb "$work/vmdeb"
mkdir -p "$work/cfg"
cat >"$work/cfg/small.yaml" <<YAML
name: small
suite: trixie
architecture: amd64
variant: minbase
bootstrap: native
kernel: none
outputs: [{type: tarball, path: out/small.tar.gz}]
YAML
chmod -R a+rX "$work"
# The config's own output directory must be writable by whoever builds it.
chown -R "$user" "$work/cfg"
export VMDEB_STAGE_CACHE=off
secs() { awk "BEGIN{printf \"%.1f\", $2-$1}"; }
load() { cut -d' ' -f1 /proc/loadavg; }
asuser() { setpriv --reuid "$user" --regid "$user" --clear-groups -- env -i PATH="$PATH" HOME="$(getent passwd $user | cut -d: -f6)" VMDEB_STAGE_CACHE=off "$@"; }

# Fill the package caches (root's and the user's), untimed.
"$work/vmdeb" build --outdir "$work/warm" "$work/cfg/small.yaml" >/dev/null
mkdir -p "$work/uwarm" && chown "$user" "$work/uwarm"
asuser "$work/vmdeb" build --outdir "$work/uwarm" "$work/cfg/small.yaml" >/dev/null

# The builder image, on its own (a fresh builder cache).
t0=$(date +%s.%N)
l0=$(load)
key=$("$work/vmdeb" build --vm --outdir "$work/first" "$work/cfg/small.yaml" | tee "$work/first.log" | sed -n 's/.*builder image \(.*\) made in .*/\1/p')
t1=$(date +%s.%N)
echo "first --vm build (builder image ${key:-cached} + build): $(secs $t0 $t1) s, load $l0 -> $(load)"
grep -E 'builder image .* made in|builder VM \(' "$work/first.log" || true

printf '| round | how | seconds | load at start -> end |\n|---|---|---|---|\n'
for r in $(seq 1 "$rounds"); do
	for how in host rootless vm; do
		out="$work/out-$how-$r"
		mkdir -p "$out" && chown "$user" "$out"
		l0=$(load)
		t0=$(date +%s.%N)
		case $how in
		host) "$work/vmdeb" build --outdir "$out" "$work/cfg/small.yaml" >"$out.log" 2>&1 ;;
		rootless) asuser "$work/vmdeb" build --isolation userns --outdir "$out" "$work/cfg/small.yaml" >"$out.log" 2>&1 ;;
		vm) "$work/vmdeb" build --vm --outdir "$out" "$work/cfg/small.yaml" >"$out.log" 2>&1 ;;
		esac
		t1=$(date +%s.%N)
		note=
		[ $how = vm ] && note=" ($(sed -n 's/^vmdeb: builder VM (\([a-z]*\)): up in \([^,]*\),.*/\1, up in \2/p' "$out.log"))"
		echo "| $r | $how$note | $(secs $t0 $t1) | $l0 -> $(load) |"
		cmp -s "$out/small.packages" "$work/warm/small.packages" || echo "  ($how: package list differs from the host build's)"
	done
done
