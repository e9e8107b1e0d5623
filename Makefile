# vmdeb: build, install the host's tools, test.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

# Debian packages vmdeb uses on the build host (and its tests: podman,
# runc, skopeo and umoci load, run and read the oci output's images).
DEB_PACKAGES = debootstrap squashfs-tools xorriso isolinux syslinux-common \
	grub-common grub-pc-bin grub-efi-amd64-bin mtools dosfstools e2fsprogs \
	qemu-system-x86 ovmf qemu-utils debian-archive-keyring ca-certificates \
	qemu-system-arm qemu-efi-aarch64 qemu-user-static binfmt-support \
	btrfs-progs extlinux uidmap fdisk groff-base \
	debhelper dpkg-dev lintian gpg gpg-agent gpgv \
	docker-registry git rsync nodejs \
	podman runc skopeo umoci

GITLAB_CI_LOCAL = 4.65.1

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: all vmdeb man deps example test unit fuzz integration bench clean proof-foreign
.PHONY: deb

all: vmdeb

# Static (no cgo): the same binary runs on the host and in builder VMs of
# older releases.
vmdeb:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.Version=$(VERSION)" -o vmdeb ./cmd/vmdeb

# The man pages (vmdeb(1), vmdeb-COMMAND(1), vmdeb.yaml(5)) and the bash,
# zsh and fish completions, generated from the command tree that --help
# prints: $(BUILDDIR)/man/man1, $(BUILDDIR)/man/man5, $(BUILDDIR)/completions.
# Dated by the last commit, so the same source makes the same pages.
# Read one with: man -M $(BUILDDIR)/man vmdeb-build
BUILDDIR ?= build
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
man: vmdeb
	rm -rf $(BUILDDIR)/man $(BUILDDIR)/completions
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ./vmdeb gen-docs $(BUILDDIR)

# The Debian package, built from debian/ by dpkg-buildpackage and moved
# from the parent directory into $(BUILDDIR)/deb: vmdeb_VERSION_ARCH.deb
# with its .buildinfo and .changes (docs/packaging.md). The Go modules are
# downloaded first; the package build itself does not reach the network.
deb:
	$(GO) mod download
	GO=$(GO) GOCACHE="$$($(GO) env GOCACHE)" GOMODCACHE="$$($(GO) env GOMODCACHE)" \
		dpkg-buildpackage -us -uc -b
	@set -e; v=$$(dpkg-parsechangelog -S Version); a=$$(dpkg-architecture -q DEB_HOST_ARCH); \
		mkdir -p $(BUILDDIR)/deb; \
		for f in vmdeb_$${v}_$$a.deb vmdeb-dbgsym_$${v}_$$a.deb vmdeb_$${v}_$$a.buildinfo vmdeb_$${v}_$$a.changes; do \
			mv ../$$f $(BUILDDIR)/deb/; done; \
		echo "$(BUILDDIR)/deb/vmdeb_$${v}_$$a.deb"

# Install what a build needs on a Debian host (as root).
deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEB_PACKAGES)
	@# GitLab CI run locally, for the test of vmdeb plan's child pipeline
	@# (4.65 is the newest that runs on the Node.js of Debian stable).
	[ "$$(gitlab-ci-local --version 2>/dev/null)" = $(GITLAB_CI_LOCAL) ] || npm install -g --no-fund --no-audit gitlab-ci-local@$(GITLAB_CI_LOCAL)
	@# Foreign architectures run through the kernel's binfmt_misc; a host
	@# without systemd does not mount it or register the handlers by itself.
	[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	update-binfmts --enable
	@# A kernel without its 32-bit compat layer (ia32_emulation=0) runs no
	@# i386 programs, and Debian registers no qemu-i386 handler on amd64.
	scripts/compat-binfmt.sh

# Build the bundled default image: out/debian-live-minimal-amd64.iso
example: vmdeb
	./vmdeb build examples/live-minimal.yaml

# Everything: unit tests, each fuzz target for a while, and, as root, the
# real builds and boots.
test: vmdeb
	$(GO) vet ./...
	$(MAKE) fuzz
	$(GO) test -count=1 -timeout 80m ./...

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time);
# what it finds is kept in the package's testdata/fuzz and fails the run.
# A count of executions, not a duration: Go 1.26's fuzzing coordinator can
# fail a target with a bare "context deadline exceeded" when a duration ends
# while a starved worker is mid-call (go.dev/issue/75804, fixed in Go 1.27);
# a count has no deadline to race. 50000 runs take 3 to 15 s a target here.
FUZZTIME ?= 50000x
FUZZ_TARGETS = ./internal/config:FuzzParse ./internal/config:FuzzParseSize \
	./internal/apt:FuzzParseSources ./internal/apt:FuzzParseRelease \
	./internal/vmdebootstrap:FuzzParseINI ./internal/vmdebootstrap:FuzzArgs \
	./internal/archive:FuzzReadDebInfo
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

# Proofs longer than CI has time for, run by hand (as root) and recorded in
# docs/ with the date and the load.
# proof-foreign: the arm64 and i386 live ISOs built (through qemu-user, and
# qemu-i386 where the kernel runs no 32-bit programs) and booted with
# qemu-system-aarch64 (UEFI) and qemu-system-i386 (BIOS).
proof-foreign: vmdeb
	VMDEB_PROOF=proof-foreign $(GO) test -count=1 -timeout 120m -v -run '^(TestForeignArm64|TestI386Live)$$' ./test/integration

unit:
	$(GO) test -count=1 -short ./...

bench: vmdeb
	bench/live-minimal.sh

clean:
	rm -f vmdeb
	rm -rf $(BUILDDIR)/man $(BUILDDIR)/completions
	rm -rf $(BUILDDIR)/deb
