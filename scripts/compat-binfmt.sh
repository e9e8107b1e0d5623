#!/bin/sh
# Registers a qemu-i386 binfmt handler on an amd64 host whose kernel does not
# run i386 programs itself (built without its compat layer, or booted with
# ia32_emulation=0). Does nothing where the kernel runs them: a handler would
# take every i386 program away from it. See docs/architectures.md.
set -eu
[ "$(dpkg --print-architecture)" = amd64 ] || exit 0
[ -e /proc/sys/fs/binfmt_misc/qemu-i386 ] && exit 0

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
# The program vmdeb's own check runs (internal/arch/probe.go): a static
# ELF32 i386 executable that only exits with status 0.
printf '%s' f0VMRgEBAQAAAAAAAAAAAAIAAwABAAAAVAABADQAAAAAAAAAAAAAADQAIAABAAAAAAAAAAEAAAAAAAAAAAABAAAAAQBdAAAAXQAAAAUAAAAAEAAAuAEAAAAx282A |
	base64 -d >"$probe/exit"
chmod 0755 "$probe/exit"
if "$probe/exit" 2>/dev/null; then
	exit 0
fi

echo "this kernel does not run i386 programs: registering qemu-i386 (binfmt_misc)"
mkdir -p /usr/local/libexec/vmdeb
# The -binfmt-P name makes Debian's qemu keep the program's argv[0].
ln -sf /usr/bin/qemu-i386-static /usr/local/libexec/vmdeb/i386-binfmt-P
update-binfmts --package vmdeb --install qemu-i386 /usr/local/libexec/vmdeb/i386-binfmt-P \
	--magic '\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00' \
	--mask '\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' \
	--offset 0 --credentials yes --fix-binary yes --preserve yes
"$probe/exit"
