package vmdebootstrap

import (
	"regexp"
	"strings"
	"testing"
)

// TestFastYarns are vmdebootstrap 1.6's yarns/200-fast-tests.yarn, the
// scenarios that test option handling, with their expected outcomes:
// exit status, the error message's patterns, and patterns the dry run's
// output has (vmdebootstrap's package list; vmdeb's config) or lacks.
// Where vmdeb cannot build what vmdebootstrap accepted, the row says so
// (vmdeb) and expects vmdeb's refusal instead.
func TestFastYarns(t *testing.T) {
	for _, sc := range []struct {
		scenario string
		args     string
		ok       bool
		errs     []string // THEN vmdebootstrap wrote an error message matching
		has      []string // THEN vmdebootstrap wrote a message matching
		lacks    []string // THEN vmdebootstrap wrote a message not matching
		vmdeb    string   // why vmdeb's outcome differs
	}{
		{scenario: "--squash and --image used together", args: "--squash=FOO --image=BAR --dry-run", errs: []string{"--squash", "--image"}},
		{scenario: "--squash and --arch arm64 used together", args: "--squash=FOO --arch=arm64 --dry-run", ok: true},
		{scenario: "--use-uefi and --arch arm64 used together", args: "--image=FOO --grub --use-uefi --arch=arm64 --dry-run", ok: true},
		{scenario: "--arch arm64 used with --image but without --use-uefi", args: "--image=FOO --foreign=PATH --arch=arm64 --dry-run", errs: []string{"UEFI", "arm64"}},
		{scenario: "--use-uefi and --arch arm64 used without grub", args: "--image=FOO --use-uefi --arch=arm64 --dry-run", errs: []string{"UEFI", "Grub"}},
		{scenario: "--use-uefi and --arch arm64 used without image", args: "--grub --use-uefi --arch=arm64 --dry-run", errs: []string{"disk image filename", "squash"}},
		{scenario: "--size too small for a bootstrap", args: "--image=FOO --size=100M --dry-run", errs: []string{"too small", "bootstrap"}},
		{scenario: "Debian distribution stable name check", args: "--image=FOO --distribution=stable --dry-run", ok: true},
		{scenario: "Debian distribution jessie name check", args: "--image=FOO --distribution=jessie --dry-run", ok: true},
		{scenario: "allow use of arch and foreign options", args: "--image=FOO --arch=armhf --foreign=PATH --dry-run", ok: true},
		{scenario: "disallow use of uefi on unsupported architectures", args: "--image=FOO --grub --use-uefi --arch=armel --dry-run", errs: []string{"armel", "not a supported", "UEFI"}},
		{scenario: "disallow use of bootpartition if ESP already set", args: "--image=FOO --bootoffset=1024 --grub --use-uefi --dry-run", errs: []string{"separate boot", "not supported", "UEFI"}},
		{scenario: "disallow UEFI support on wheezy except on amd64", args: "--image=FOO --grub --use-uefi --roottype=ext2 --distribution=wheezy --arch=arm64 --dry-run", errs: []string{"Only amd64", "supports UEFI", "Wheezy"}},
		{scenario: "disallow apt-mirror without configure-apt", args: "--image=FOO --apt-mirror=mirror", errs: []string{"requires --configure-apt as well"}},
		{scenario: "default includes the kernel package", args: "--image=FOO --arch=amd64  --dry-run", ok: true, has: []string{"linux-image-amd64"}},
		{scenario: "no-linux omits the kernel package", args: "--no-kernel --image=FOO --arch=amd64  --dry-run", errs: []string{"--no-kernel with --image"},
			vmdeb: "vmdeb refuses a disk whose boot loader has no kernel to boot (--no-extlinux makes a board image)"},
		{scenario: "no-linux omits the kernel package (tarball)", args: "--no-kernel --tarball=FOO --arch=amd64  --dry-run", ok: true, lacks: []string{"linux-image-amd64"}},
		{scenario: "kernel-package includes the kernel package", args: "--kernel-package unlikely --image=FOO --arch=amd64  --dry-run", ok: true,
			lacks: []string{"linux-image-amd64"}, has: []string{"unlikely"}},
		{scenario: "no-kernel overrides kernel-package", args: "--no-kernel --kernel-package unlikely --image=FOO --arch=amd64  --dry-run", errs: []string{"--no-kernel with --image"},
			vmdeb: "vmdeb refuses a disk whose boot loader has no kernel to boot (--no-extlinux makes a board image)"},
		{scenario: "no-kernel overrides kernel-package (tarball)", args: "--no-kernel --kernel-package unlikely --tarball=FOO --arch=amd64  --dry-run", ok: true,
			lacks: []string{"linux-image-amd64", "unlikely"}},
		{scenario: "package includes the specified package", args: "--package unlikely --image=FOO --arch=amd64  --dry-run", ok: true, has: []string{"linux-image-amd64", "unlikely"}},
		// --tarball takes --arch=amd64 as its file name, as optparse did.
		{scenario: "only images can be converted to qcow2", args: "--convert-qcow2 --tarball --arch=amd64 --dry-run", errs: []string{"qcow2 can only", "with --image"}},
		{scenario: "tarball is not usable with image", args: "--image=FOO --tarball=FOO --arch=amd64 --dry-run", errs: []string{"not both"}},
		{scenario: "tarball is not usable with squash", args: "--squash=FOO --tarball=FOO --arch=amd64 --dry-run", errs: []string{"not both"}},
		{scenario: "masking systemd-networkd without updating initramfs", args: "--image=FOO --no-systemd-networkd --no-update-initramfs --dry-run", errs: []string{"requires updating the"}},
		{scenario: "btrfs not yet supported with extlinux", args: "--image=FOO --roottype btrfs --extlinux --dry-run", errs: []string{"not yet supported"}},
		{scenario: "btrfs not yet supported without disabling extlinux", args: "--image=FOO --roottype btrfs --dry-run", errs: []string{"not yet supported"}},
		{scenario: "bootflag requires argument", args: "--bootflag", errs: []string{"bootflag", "requires an argument"}},
		{scenario: "wheezy image does not support ext4", args: "--image=FOO --roottype ext4 --dry-run --distribution wheezy", errs: []string{"Wheezy images using ext4 will not be able to boot"}},
	} {
		t.Run(sc.scenario, func(t *testing.T) {
			r, err := build(strings.Fields(sc.args))
			if sc.ok != (err == nil) {
				t.Fatalf("%s: error %v, want success %v %s", sc.args, err, sc.ok, sc.vmdeb)
			}
			for _, p := range sc.errs {
				if !regexp.MustCompile(p).MatchString(err.Error()) {
					t.Errorf("error %q does not match %q", err, p)
				}
			}
			if err != nil {
				return
			}
			if !r.s.Bool("dry-run") {
				t.Fatal("not a dry run")
			}
			for _, p := range sc.has {
				if !regexp.MustCompile(p).MatchString(r.b.YAML) {
					t.Errorf("the dry run's config lacks %q:\n%s", p, r.b.YAML)
				}
			}
			for _, p := range sc.lacks {
				if regexp.MustCompile(p).MatchString(r.b.YAML) {
					t.Errorf("the dry run's config has %q:\n%s", p, r.b.YAML)
				}
			}
		})
	}
}
