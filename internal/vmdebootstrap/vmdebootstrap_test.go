package vmdebootstrap

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"vmdeb/internal/config"
)

// The sources cited below are vmdebootstrap 1.6 (bin/vmdebootstrap,
// vmdebootstrap/*.py, yarns/*.yarn) and python-cliapp
// (cliapp/settings.py), with their line numbers.

// result is what one command line makes.
type result struct {
	s     *Settings
	spec  config.Spec
	b     *Build
	notes []string
}

func (r result) disk(t *testing.T) config.Output {
	t.Helper()
	for _, o := range r.spec.Outputs {
		if o.Type == "disk" {
			return o
		}
	}
	t.Fatal("no disk output")
	return config.Output{}
}

func (r result) noted(t *testing.T, sub string) {
	t.Helper()
	for _, n := range r.notes {
		if strings.Contains(n, sub) {
			return
		}
	}
	t.Errorf("no note %q in %q", sub, r.notes)
}

// build parses, checks and turns a command line into a vmdeb config, with
// no default config files and /work as the working directory.
func build(args []string) (result, error) {
	s, err := ParseWith(args, nil)
	if err != nil {
		return result{}, err
	}
	if s.Action != "" {
		return result{s: s}, nil
	}
	if err := s.Validate(); err != nil {
		return result{s: s}, err
	}
	b, err := s.Config("/work", "/run/vmdeb-test", []string{"HOME=/root", "MY_BOARD=wandboard", "VMDEB_NAME=x"})
	if err != nil {
		return result{s: s}, err
	}
	r := result{s: s, b: b, notes: s.Notes()}
	if err := yaml.Unmarshal([]byte(b.YAML), &r.spec); err != nil {
		return r, err
	}
	return r, nil
}

func img(args ...string) []string { return append([]string{"--image", "vm.img"}, args...) }

func TestOptionTable(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf1 := filepath.Join(dir, "a.conf")
	conf2 := filepath.Join(dir, "b.conf")
	os.WriteFile(conf1, []byte("[config]\nimage = a.img\nhostname = one\npackage = vim, less\n"), 0o644)
	os.WriteFile(conf2, []byte("[config]\nhostname = two\n"), 0o644)

	rows := []struct {
		name  string
		why   string // the vmdebootstrap or cliapp source that justifies the row
		args  []string
		err   string // a refusal: part of its message
		check func(t *testing.T, r result)
	}{
		// vmdebootstrap's own settings, in add_settings' order.
		{"verbose", "bin/vmdebootstrap:71 boolean; base.py:102 message() prints", img("--verbose"), "",
			func(t *testing.T, r result) { r.noted(t, "--verbose") }},
		{"image", "bin/vmdebootstrap:72, :221 create_empty_image", img(), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Path != "/work/vm.img" || d.DiskFormat() != "raw" {
					t.Errorf("%+v", d)
				}
			}},
		{"size default", "bin/vmdebootstrap:73 default='1G'; cliapp settings.py:217 parse_human_size: g is 10**9", img(), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Size.Bytes != 1000000000 {
					t.Errorf("size %d", d.Size.Bytes)
				}
			}},
		{"size units", "cliapp settings.py:217 parse_human_size: gi is 2**30", img("--size", "4GiB"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Size.Bytes != 4<<30 {
					t.Errorf("size %d", d.Size.Bytes)
				}
			}},
		{"size too small", "bin/vmdebootstrap:155 size <= 100000000; yarns/200-fast-tests.yarn 'size too small'", img("--size", "100M"), "too small for a bootstrap", nil},
		{"size unreadable", "cliapp settings.py:224 parse_human_size returns 0; bin/vmdebootstrap:155", img("--size", "lots"), "too small", nil},
		{"size with --tarball", "bin/vmdebootstrap:155 checks size whatever the output", []string{"--tarball", "t.tar", "--size", "50M"}, "too small", nil},
		{"bootsize", "bin/vmdebootstrap:75, :437 partition_image makes /boot first", img("--bootsize", "256M"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.BootSize.Bytes != 256000000 {
					t.Errorf("boot-size %d", d.BootSize.Bytes)
				}
				r.noted(t, "ext2")
			}},
		{"boottype vfat", "bin/vmdebootstrap:77, :247 mkfs -t boottype", img("--bootsize", "100M", "--boottype", "vfat", "--no-extlinux"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.BootFilesystem != "vfat" || d.Bootloader != "none" {
					t.Errorf("boot-filesystem %q bootloader %q", d.BootFilesystem, d.Bootloader)
				}
			}},
		{"boottype unknown", "bin/vmdebootstrap:247 mkfs -t boottype", img("--bootsize", "100M", "--boottype", "jfs"), "--boottype jfs", nil},
		{"boottype ext4", "bin/vmdebootstrap:77", img("--bootsize", "100M", "--boottype", "ext4"), "", nil},
		{"bootflag", "bin/vmdebootstrap:78, :254 parted set 1 FLAG on", img("--bootflag", "lba"), "--bootflag lba", nil},
		{"bootflag lba on FAT", "bin/vmdebootstrap:254 parted set 1 lba on: a FAT type's LBA form", img("--bootsize", "64M", "--boottype", "vfat", "--no-extlinux", "--bootflag", "lba"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.BootFilesystem != "vfat" {
					t.Errorf("boot-filesystem %q", d.BootFilesystem)
				}
			}},
		{"bootflag esp", "bin/vmdebootstrap:254", img("--bootsize", "64M", "--boottype", "vfat", "--no-extlinux", "--bootflag", "esp"), "--bootflag esp", nil},
		{"bootflag needs a value", "yarns/200-fast-tests.yarn 'bootflag requires argument'", []string{"--bootflag"}, "bootflag option requires an argument", nil},
		{"bootoffset with bootsize", "bin/vmdebootstrap:79, :422 partoffset = bootoffset in whole MiB", img("--bootsize", "100M", "--bootoffset", "8MiB"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.PartitionOffset.Bytes != 8<<20 {
					t.Errorf("partition-offset %d", d.PartitionOffset.Bytes)
				}
			}},
		{"bootoffset small", "bin/vmdebootstrap:425 under 1 MiB: partoffset 1", img("--bootsize", "100M", "--bootoffset", "8K"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.PartitionOffset.Bytes != 0 {
					t.Errorf("partition-offset %d (want the default, 1 MiB)", d.PartitionOffset.Bytes)
				}
			}},
		{"bootoffset alone", "bin/vmdebootstrap:437 partoffset is used with bootsize only", img("--bootoffset", "8M"), "",
			func(t *testing.T, r result) { r.noted(t, "--bootoffset: ignored") }},
		{"use-uefi", "bin/vmdebootstrap:81, :268 install_grub_uefi", img("--use-uefi", "--grub"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Bootloader != "grub-uefi" || d.ESPSize.Bytes != 0 {
					t.Errorf("%+v", d)
				}
			}},
		{"use-uefi without grub", "uefi.py:68 'UEFI without Grub is not supported.'", img("--use-uefi"), "UEFI without Grub", nil},
		{"use-uefi with bootsize", "uefi.py:63 'A separate boot partition is not supported with UEFI'", img("--use-uefi", "--grub", "--bootsize", "200M"), "separate boot partition", nil},
		{"use-uefi on armel", "uefi.py:58 not in arch_table", img("--use-uefi", "--grub", "--arch", "armel"), "not a supported UEFI architecture", nil},
		{"esp-size", "bin/vmdebootstrap:82, uefi.py:144 partition_esp", img("--use-uefi", "--grub", "--esp-size", "100MiB"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.ESPSize.Bytes != 100<<20 {
					t.Errorf("esp-size %d", d.ESPSize.Bytes)
				}
			}},
		{"esp-size without use-uefi", "uefi.py:48 esp-size != 5242880 without use-uefi", img("--esp-size", "100M"), "esp-size to have effect", nil},
		{"esp-size default without use-uefi", "uefi.py:48 5mib is the default", img("--esp-size", "5mib"), "", nil},
		{"part-type", "bin/vmdebootstrap:84, :412 parted mklabel", img("--part-type", "gpt"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.PartitionTable != "gpt" {
					t.Errorf("%q", d.PartitionTable)
				}
			}},
		{"part-type default", "bin/vmdebootstrap:84 default msdos", img(), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.PartitionTable != "mbr" {
					t.Errorf("%q", d.PartitionTable)
				}
			}},
		{"part-type other", "parted's other labels: vmdeb writes msdos or gpt", img("--part-type", "loop"), "--part-type", nil},
		{"roottype", "bin/vmdebootstrap:85, :237 mkfs", img("--roottype", "btrfs", "--grub"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Filesystem != "btrfs" {
					t.Errorf("%q", d.Filesystem)
				}
			}},
		{"roottype btrfs with extlinux", "bin/vmdebootstrap:192; yarns 'btrfs not yet supported'", img("--roottype", "btrfs"), "not yet supported on btrfs", nil},
		{"swap", "bin/vmdebootstrap:86; base.py:178 check_swap_size: at least 256 MiB", img("--swap", "100M"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.SwapSize.Bytes != 256<<20 {
					t.Errorf("swap %d", d.SwapSize.Bytes)
				}
			}},
		{"foreign", "bin/vmdebootstrap:87, :497; base.py:200 no acpid with --foreign", []string{"--tarball", "t.tar", "--arch", "armhf", "--foreign", "qemu-arm-static"}, "",
			func(t *testing.T, r result) {
				if r.spec.BinfmtHandler != "/work/qemu-arm-static" || slices.Contains(r.spec.Packages, "acpid") {
					t.Errorf("%q %q", r.spec.BinfmtHandler, r.spec.Packages)
				}
			}},
		{"debootstrapopts", "bin/vmdebootstrap:89 string_list, :517 every part of every item becomes --part",
			img("--debootstrapopts", "variant=buildd keyring=k.gpg", "--debootstrapopts", "no-check-gpg merged-usr", "--debootstrapopts", "include=a,b components=main,contrib"), "",
			func(t *testing.T, r result) {
				sp := r.spec
				if sp.Variant != "buildd" || sp.Keyring != "/work/k.gpg" || !sp.Insecure || !slices.Equal(sp.Components, []string{"main", "contrib"}) ||
					!slices.Contains(sp.Packages, "a") || !slices.Contains(sp.Packages, "b") {
					t.Errorf("%+v", sp)
				}
			}},
		{"debootstrapopts unknown", "bin/vmdebootstrap:517: vmdeb cannot pass every debootstrap option", img("--debootstrapopts", "exclude=nano"), `"exclude=nano"`, nil},
		{"debootstrapopts no-merged-usr", "bin/vmdebootstrap:517", img("--debootstrapopts", "no-merged-usr"), `"no-merged-usr"`, nil},
		{"variant default", "bin/vmdebootstrap:510 no --variant: debootstrap's default set", img(), "",
			func(t *testing.T, r result) {
				if r.spec.Variant != "important" {
					t.Errorf("%q", r.spec.Variant)
				}
			}},
		{"extlinux default", "bin/vmdebootstrap:90 default True, :285; vmdeb uses GRUB", img(), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Bootloader != "grub-bios" {
					t.Errorf("%q", d.Bootloader)
				}
				r.noted(t, "not extlinux")
			}},
		{"no-extlinux", "bin/vmdebootstrap:285 no boot loader without --grub and extlinux", img("--no-extlinux"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Bootloader != "none" {
					t.Errorf("%q", d.Bootloader)
				}
			}},
		{"tarball", "bin/vmdebootstrap:92, base.py:113 create_tarball", []string{"--tarball", "t.tar"}, "",
			func(t *testing.T, r result) {
				if o := r.spec.Outputs; len(o) != 1 || o[0].Type != "tarball" || o[0].Path != "/work/t.tar" {
					t.Errorf("%+v", o)
				}
			}},
		{"tarball with image", "bin/vmdebootstrap:173; yarns 'tarball is not usable with image'", img("--tarball", "t.tar"), "not both", nil},
		{"apt-mirror", "bin/vmdebootstrap:93; filesystem.py:232 configure_apt", img("--apt-mirror", "http://a.example/debian", "--configure-apt"), "",
			func(t *testing.T, r result) {
				if r.spec.AptMirror != "http://a.example/debian" {
					t.Errorf("%q", r.spec.AptMirror)
				}
			}},
		{"apt-mirror without configure-apt", "bin/vmdebootstrap:167; yarns 'disallow apt-mirror without configure-apt'", img("--apt-mirror", "http://a.example/debian"), "requires --configure-apt as well", nil},
		{"mirror", "bin/vmdebootstrap:94, :522", img("--mirror", "http://m.example/debian"), "",
			func(t *testing.T, r result) {
				if r.spec.Mirror != "http://m.example/debian" {
					t.Errorf("%q", r.spec.Mirror)
				}
			}},
		{"mirror default", "bin/vmdebootstrap:94 a fixed mirror; vmdeb: the host's", img(), "",
			func(t *testing.T, r result) {
				if r.spec.Mirror != "" {
					t.Errorf("%q", r.spec.Mirror)
				}
			}},
		{"arch", "bin/vmdebootstrap:96, :510; codenames.py:63 linux-image-ARCH", img("--arch", "arm64", "--use-uefi", "--grub"), "",
			func(t *testing.T, r result) {
				if r.spec.Architecture != "arm64" || r.spec.Kernel != "linux-image-arm64" {
					t.Errorf("%q %q", r.spec.Architecture, r.spec.Kernel)
				}
			}},
		{"arch armhf kernel", "codenames.py:74 armhf: linux-image-armmp", []string{"--tarball", "t.tar", "--arch", "armhf"}, "",
			func(t *testing.T, r result) {
				if r.spec.Kernel != "linux-image-armmp" {
					t.Errorf("%q", r.spec.Kernel)
				}
			}},
		{"arch armhf image", "vmdebootstrap left a board's boot loader to --customize", img("--arch", "armhf"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Bootloader != "none" {
					t.Errorf("bootloader %q", d.Bootloader)
				}
				r.noted(t, "the --customize script writes the board's")
			}},
		{"board image without kernel", "bin/vmdebootstrap:118 --no-kernel; board images install a vendor kernel in the hook",
			img("--arch", "armel", "--no-kernel", "--bootsize", "64M", "--boottype", "vfat", "--customize", hook), "",
			func(t *testing.T, r result) {
				d := r.disk(t)
				if r.spec.Kernel != "none" || d.Bootloader != "none" || d.ImageHook != "/run/vmdeb-test/"+ImageHookName {
					t.Errorf("kernel %q bootloader %q image-hook %q", r.spec.Kernel, d.Bootloader, d.ImageHook)
				}
			}},
		{"no kernel with a boot loader", "vmdeb: nothing for GRUB to boot", img("--no-kernel", "--grub"), "--no-kernel with --image and a boot loader", nil},
		{"arch arm64 image without use-uefi", "uefi.py:51 exclusive; yarns '--arch arm64 used with --image but without --use-uefi'", img("--arch", "arm64"), "Only UEFI is supported on arm64", nil},
		{"arch arm64 tarball", "uefi.py:51 refused tarballs too; vmdeb needs no boot loader there", []string{"--tarball", "t.tar", "--arch", "arm64"}, "", nil},
		{"distribution", "bin/vmdebootstrap:98, :522", img("--distribution", "trixie"), "",
			func(t *testing.T, r result) {
				if r.spec.Suite != "trixie" {
					t.Errorf("%q", r.spec.Suite)
				}
			}},
		{"distribution default", "bin/vmdebootstrap:98 default stable", img(), "",
			func(t *testing.T, r result) {
				if r.spec.Suite != "stable" {
					t.Errorf("%q", r.spec.Suite)
				}
			}},
		{"package", "bin/vmdebootstrap:100 string_list, :514 --include=a,b; debootstrap splits at commas and spaces",
			img("--package", "a,b", "--package", "c d", "--package", "e"), "",
			func(t *testing.T, r result) {
				if want := []string{"a", "b", "c", "d", "e", "acpid"}; !slices.Equal(r.spec.Packages, want) {
					t.Errorf("%q, want %q", r.spec.Packages, want)
				}
			}},
		{"custom-package", "bin/vmdebootstrap:101, :529 install_debs", img("--custom-package", "x.deb", "--custom-package", "/d/y.deb"), "",
			func(t *testing.T, r result) {
				if !slices.Equal(r.spec.CustomPackages, []string{"/work/x.deb", "/d/y.deb"}) {
					t.Errorf("%q", r.spec.CustomPackages)
				}
			}},
		{"no-kernel", "bin/vmdebootstrap:103; codenames.py:65", []string{"--tarball", "t.tar", "--no-kernel"}, "",
			func(t *testing.T, r result) {
				if r.spec.Kernel != "none" {
					t.Errorf("%q", r.spec.Kernel)
				}
			}},
		{"no-kernel with image", "vmdeb cannot yet write a disk without a kernel", img("--no-kernel"), "--no-kernel with --image", nil},
		{"kernel-package", "bin/vmdebootstrap:104; base.py:205", img("--kernel-package", "linux-image-rt-amd64"), "",
			func(t *testing.T, r result) {
				if r.spec.Kernel != "linux-image-rt-amd64" {
					t.Errorf("%q", r.spec.Kernel)
				}
			}},
		{"enable-dhcp", "bin/vmdebootstrap:106; network.py:37 eth0 dhcp with --no-systemd-networkd", img("--enable-dhcp", "--no-systemd-networkd"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Network != "ifupdown" {
					t.Errorf("%q", d.Network)
				}
			}},
		{"enable-dhcp tarball", "bin/vmdebootstrap:330 setup_networking for every output", []string{"--tarball", "t.tar", "--enable-dhcp", "--no-systemd-networkd"}, "",
			func(t *testing.T, r result) {
				if !strings.Contains(r.b.Hook, "iface eth0 inet dhcp") || !strings.Contains(r.b.Hook, "80-net-setup-link.rules") {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"root-password", "bin/vmdebootstrap:107; base.py:124", img("--root-password", "pw", "--lock-root-password"), "",
			func(t *testing.T, r result) {
				if r.spec.Root.Password != "pw" || r.spec.LockRoot() {
					t.Errorf("%+v", r.spec.Root)
				}
			}},
		{"lock-root-password", "bin/vmdebootstrap:108; base.py:127", img("--lock-root-password"), "",
			func(t *testing.T, r result) {
				if !r.spec.LockRoot() {
					t.Errorf("%+v", r.spec.Root)
				}
			}},
		{"root without either", "base.py:131 empty root password; vmdeb locks it", img(), "",
			func(t *testing.T, r result) {
				if !r.spec.LockRoot() {
					t.Errorf("%+v", r.spec.Root)
				}
				r.noted(t, "root's password is locked")
			}},
		{"customize", "bin/vmdebootstrap:110; base.py:164 [script, rootdir, image] on the mounted image, then filesystem.py:73 update-initramfs", img("--customize", hook), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.ImageHook != "/run/vmdeb-test/"+ImageHookName {
					t.Errorf("image-hook %q", d.ImageHook)
				}
				for _, w := range []string{"image=$2\n", "'" + hook + `' "$root" "$image"`, "cd '/work'\n", "export MY_BOARD='wandboard'\n", "update-initramfs -u"} {
					if !strings.Contains(r.b.ImageHook, w) {
						t.Errorf("image hook lacks %q:\n%s", w, r.b.ImageHook)
					}
				}
				if strings.Contains(r.b.ImageHook, "VMDEB_NAME") || strings.Contains(r.b.Hook, hook) {
					t.Errorf("hook:\n%s\nimage hook:\n%s", r.b.Hook, r.b.ImageHook)
				}
			}},
		{"customize tarball", "base.py:164 settings['image'] is '' for a tarball", []string{"--tarball", "t.tar", "--customize", hook}, "",
			func(t *testing.T, r result) {
				if !strings.Contains(r.b.Hook, "image=''\n") {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"customize missing", "base.py:154 not found here nor in the examples: vmdebootstrap went on without", img("--customize", "no-such-hook.sh"), "no-such-hook.sh: no such file", nil},
		{"hostname", "bin/vmdebootstrap:111; filesystem.py:280", img("--hostname", "box"), "",
			func(t *testing.T, r result) {
				if r.spec.Hostname != "box" {
					t.Errorf("%q", r.spec.Hostname)
				}
			}},
		{"hostname default", "bin/vmdebootstrap:111 default debian", img(), "",
			func(t *testing.T, r result) {
				if r.spec.Hostname != "debian" {
					t.Errorf("%q", r.spec.Hostname)
				}
			}},
		{"user", "bin/vmdebootstrap:113 string_list; base.py:141 USER/PASSWORD, USER alone: passwd -d", img("--user", "a/pw", "--user", "b", "--sudo"), "",
			func(t *testing.T, r result) {
				u := r.spec.Users
				if len(u) != 2 || u[0].Name != "a" || u[0].Password != "pw" || !u[0].Sudo || u[1].Name != "b" || u[1].Password != "" {
					t.Errorf("%+v", u)
				}
				if !strings.Contains(r.b.Hook, "passwd -d 'b'") {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"serial-console", "bin/vmdebootstrap:114; grub.py:38", img("--serial-console"), "",
			func(t *testing.T, r result) { r.noted(t, "--serial-console") }},
		{"serial-console-command", "bin/vmdebootstrap:115; base.py:169 wheezy's inittab only", img("--serial-console-command", "/sbin/getty ttyS1"), "",
			func(t *testing.T, r result) { r.noted(t, "--serial-console-command") }},
		{"sudo without user", "bin/vmdebootstrap:118; base.py:202 installs sudo", img("--sudo"), "",
			func(t *testing.T, r result) {
				if !slices.Contains(r.spec.Packages, "sudo") || len(r.spec.Users) != 0 {
					t.Errorf("%q %+v", r.spec.Packages, r.spec.Users)
				}
			}},
		{"owner", "bin/vmdebootstrap:120; filesystem.py:58 chown -R OWNER", img("--owner", "1000:1000"), "",
			func(t *testing.T, r result) {
				if r.s.Str("owner") != "1000:1000" {
					t.Errorf("%q", r.s.Str("owner"))
				}
			}},
		{"squash", "bin/vmdebootstrap:122; filesystem.py:190 squash_rootfs copies /boot's files", []string{"--squash", "live"}, "",
			func(t *testing.T, r result) {
				if o := r.spec.Outputs; len(o) != 1 || o[0].Type != "squashfs" || o[0].Path != "/work/live" {
					t.Errorf("%+v", o)
				}
				if !strings.Contains(r.b.Hook, `"$root"/boot/*`) {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"squash with image", "bin/vmdebootstrap:147; yarns '--squash and --image used together'", img("--squash", "d"), "--image can no longer be used with --squash", nil},
		{"squash with tarball", "bin/vmdebootstrap:176; yarns 'tarball is not usable with squash'", []string{"--squash", "d", "--tarball", "t"}, "not both", nil},
		{"configure-apt alone", "filesystem.py:234 nothing without apt-mirror", img("--configure-apt"), "",
			func(t *testing.T, r result) {
				if r.spec.AptMirror != "" {
					t.Errorf("%q", r.spec.AptMirror)
				}
			}},
		{"mbr", "bin/vmdebootstrap:126; extlinux.py:105 install-mbr with extlinux only", img("--mbr"), "",
			func(t *testing.T, r result) { r.noted(t, "--mbr") }},
		{"grub", "bin/vmdebootstrap:127, :281 install_grub2", img("--grub"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Bootloader != "grub-bios" {
					t.Errorf("%q", d.Bootloader)
				}
			}},
		{"sparse", "bin/vmdebootstrap:129, :549 optimize_image", img("--sparse"), "",
			func(t *testing.T, r result) { r.noted(t, "--sparse") }},
		{"pkglist", "bin/vmdebootstrap:131; filesystem.py:256 dpkg.list in the working directory", img("--pkglist"), "",
			func(t *testing.T, r result) {
				if !strings.Contains(r.b.ImageHook, `dpkg-query -W "-f='\${Package}.deb\n'" >'/work/dpkg.list'`) {
					t.Errorf("image hook:\n%s", r.b.ImageHook)
				}
			}},
		{"no-acpid", "bin/vmdebootstrap:133; base.py:200", img("--no-acpid"), "",
			func(t *testing.T, r result) {
				if slices.Contains(r.spec.Packages, "acpid") {
					t.Errorf("%q", r.spec.Packages)
				}
			}},
		{"acpid default", "base.py:200 acpid unless --no-acpid or --foreign", img(), "",
			func(t *testing.T, r result) {
				if !slices.Contains(r.spec.Packages, "acpid") {
					t.Errorf("%q", r.spec.Packages)
				}
			}},
		{"no-update-initramfs", "bin/vmdebootstrap:134; filesystem.py:81", img("--customize", hook, "--no-update-initramfs"), "",
			func(t *testing.T, r result) {
				if strings.Contains(r.b.Hook, "update-initramfs") {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"no-update-initramfs no-systemd-networkd", "bin/vmdebootstrap:180; yarns 'masking systemd-networkd without updating initramfs'", img("--no-systemd-networkd", "--no-update-initramfs"), "requires updating the initramfs", nil},
		{"convert-qcow2", "bin/vmdebootstrap:136; filesystem.py:305 the file keeps its name", img("--convert-qcow2"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.DiskFormat() != "qcow2" || d.Path != "/work/vm.img" {
					t.Errorf("%+v", d)
				}
			}},
		{"convert-qcow2 without image", "bin/vmdebootstrap:170; yarns 'only images can be converted to qcow2'", []string{"--tarball", "t", "--convert-qcow2"}, "qcow2 can only be used with --image", nil},
		{"systemd-networkd default", "bin/vmdebootstrap:137 default True, :321; network.py:87 DHCP on en*", img(), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Network != "networkd" {
					t.Errorf("%q", d.Network)
				}
			}},
		{"systemd-networkd tarball", "bin/vmdebootstrap:321 for every output", []string{"--tarball", "t"}, "",
			func(t *testing.T, r result) {
				if !strings.Contains(r.b.Hook, "99-dhcp.network") || !strings.Contains(r.b.Hook, "systemctl enable systemd-networkd") {
					t.Errorf("hook:\n%s", r.b.Hook)
				}
			}},
		{"no-systemd-networkd", "network.py:37 ifupdown, eth0 only with --enable-dhcp", img("--no-systemd-networkd"), "",
			func(t *testing.T, r result) {
				if d := r.disk(t); d.Network != "none" {
					t.Errorf("%q", d.Network)
				}
			}},
		{"dry-run", "bin/vmdebootstrap:139, :208", img("--dry-run"), "",
			func(t *testing.T, r result) {
				if !r.s.Bool("dry-run") {
					t.Error("dry-run not set")
				}
			}},
		{"nothing to write", "bin/vmdebootstrap:150; yarns '--use-uefi and --arch arm64 used without image'", []string{"--grub", "--use-uefi", "--arch", "arm64"}, "disk image filename", nil},
		{"wheezy ext4", "bin/vmdebootstrap:186; yarns 'wheezy image does not support ext4'", img("--distribution", "wheezy"), "Wheezy images using ext4", nil},
		{"wheezy uefi", "uefi.py:72; yarns 'disallow UEFI support on wheezy except on amd64'", img("--grub", "--use-uefi", "--roottype", "ext2", "--distribution", "wheezy", "--arch", "arm64"), "Only amd64 supports UEFI in Wheezy", nil},

		// cliapp's settings (settings.py:333 _add_default_settings).
		{"output", "cliapp settings.py:334; app.py:188 opened, never written by vmdebootstrap", img("--output", "o.txt"), "",
			func(t *testing.T, r result) { r.noted(t, "--output") }},
		{"log file", "cliapp settings.py:338; app.py:414", img("--log", "build.log"), "",
			func(t *testing.T, r result) {
				if r.s.Str("log") != "build.log" {
					t.Errorf("%q", r.s.Str("log"))
				}
			}},
		{"log stderr", "cliapp app.py:412 stderr, syslog, none", img("--log", "stderr"), "",
			func(t *testing.T, r result) { r.noted(t, "--log stderr") }},
		{"log-level", "cliapp settings.py:344 choice", img("--log-level", "info"), "",
			func(t *testing.T, r result) { r.noted(t, "--log-level") }},
		{"log-level invalid", "optparse choice: invalid choice", img("--log-level", "loud"), "invalid choice", nil},
		{"log-max", "cliapp settings.py:350 bytesize", img("--log-max", "10M"), "",
			func(t *testing.T, r result) { r.noted(t, "--log-max") }},
		{"log-keep", "cliapp settings.py:353 integer", img("--log-keep", "3"), "",
			func(t *testing.T, r result) { r.noted(t, "--log-keep") }},
		{"log-keep invalid", "optparse int: invalid integer value", img("--log-keep", "x"), "invalid integer value", nil},
		{"log-mode", "cliapp settings.py:355", img("--log-mode", "0644"), "",
			func(t *testing.T, r result) { r.noted(t, "--log-mode") }},
		{"dump-memory-profile", "cliapp settings.py:361 choice", img("--dump-memory-profile", "none"), "",
			func(t *testing.T, r result) { r.noted(t, "--dump-memory-profile") }},
		{"memory-dump-interval", "cliapp settings.py:368 integer", img("--memory-dump-interval", "60"), "",
			func(t *testing.T, r result) { r.noted(t, "--memory-dump-interval") }},

		// cliapp's options that are no settings (settings.py:543-650).
		{"config", "cliapp settings.py:588 append_to_configs; :814 load_configs in order", []string{"--config", conf1, "--config", conf2}, "",
			func(t *testing.T, r result) {
				if r.spec.Hostname != "two" || r.disk(t).Path != "/work/a.img" {
					t.Errorf("%q %+v", r.spec.Hostname, r.spec.Outputs)
				}
			}},
		{"config missing", "cliapp settings.py:831 a --config file must exist", []string{"--config", filepath.Join(dir, "nope.conf")}, "nope.conf", nil},
		{"config list replaced", "cliapp settings.py:848 using_default_value, :653 the first option replaces it",
			[]string{"--config", conf1, "--package", "x", "--package", "y"}, "",
			func(t *testing.T, r result) {
				if want := []string{"x", "y", "acpid"}; !slices.Equal(r.spec.Packages, want) {
					t.Errorf("%q, want %q", r.spec.Packages, want)
				}
			}},
		{"no-default-configs", "cliapp settings.py:574 reset_configs: the list so far", []string{"--config", conf1, "--no-default-configs", "--tarball", "t"}, "",
			func(t *testing.T, r result) {
				if len(r.s.ConfigFiles) != 0 || r.spec.Hostname != "debian" {
					t.Errorf("%q %q", r.s.ConfigFiles, r.spec.Hostname)
				}
			}},
		{"dump-config", "cliapp settings.py:560", []string{"--dump-config"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "dump-config") }},
		{"dump-setting-names", "cliapp settings.py:545", []string{"--dump-setting-names"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "dump-setting-names") }},
		{"list-config-files", "cliapp settings.py:604", []string{"--list-config-files"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "list-config-files") }},
		{"help-all", "cliapp settings.py:633", []string{"--help-all"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "help-all") }},
		{"help", "optparse --help, -h", []string{"-h"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "help") }},
		{"version", "optparse --version, before the config files", []string{"--version", "--config", "/nonexistent"}, "",
			func(t *testing.T, r result) { actionIs(t, r, "version") }},
		{"generate-manpage", "cliapp settings.py:621", []string{"--generate-manpage", "t.in"}, "--generate-manpage: not supported", nil},

		// optparse's reading of the command line.
		{"abbreviation", "optparse _match_abbrev: an unambiguous prefix", []string{"--imag=vm.img", "--dist", "trixie", "--lock"}, "",
			func(t *testing.T, r result) {
				if r.spec.Suite != "trixie" || !r.spec.LockRoot() || r.disk(t).Path != "/work/vm.img" {
					t.Errorf("%+v", r.spec)
				}
			}},
		{"ambiguous abbreviation", "optparse _match_abbrev: AmbiguousOptionError", img("--con"), "ambiguous option: --con", nil},
		{"unknown option", "optparse BadOptionError", img("--imagee", "x"), "no such option: --imagee", nil},
		{"negation", "cliapp settings.py:680 add_negation_option: --no-X for every boolean", img("--sudo", "--no-sudo", "--no-no-kernel"), "",
			func(t *testing.T, r result) {
				if r.s.Bool("sudo") || r.s.Bool("no-kernel") || slices.Contains(r.spec.Packages, "sudo") {
					t.Errorf("sudo %v no-kernel %v", r.s.Bool("sudo"), r.s.Bool("no-kernel"))
				}
			}},
		{"boolean value", "optparse: a flag takes no value", img("--grub=yes"), "does not take a value", nil},
		{"value starting with a dash", "optparse takes the next argument as the value", img("--hostname", "-x"), "",
			func(t *testing.T, r result) {
				if r.spec.Hostname != "-x" {
					t.Errorf("%q", r.spec.Hostname)
				}
			}},
		{"argument", "vmdebootstrap ignored arguments; vmdeb refuses them", img("--package", "a", "b"), `unexpected argument "b"`, nil},
	}
	covered := map[string]bool{}
	for _, row := range rows {
		covered[strings.Fields(row.name)[0]] = true
		t.Run(row.name, func(t *testing.T) {
			if row.why == "" {
				t.Fatal("no source cited")
			}
			r, err := build(row.args)
			if row.err != "" {
				if err == nil || !strings.Contains(err.Error(), row.err) {
					t.Fatalf("%q: got %v, want a refusal with %q", row.args, err, row.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", row.args, err)
			}
			if row.check != nil {
				row.check(t, r)
			}
		})
	}
	// Every option has its row.
	for name := range longOptions() {
		base := strings.TrimPrefix(name, "no-")
		if !covered[name] && !covered[base] && !covered["no-"+name] {
			t.Errorf("no row for --%s", name)
		}
	}
}

func actionIs(t *testing.T, r result, want string) {
	t.Helper()
	if r.s.Action != want {
		t.Errorf("action %q, want %q", r.s.Action, want)
	}
}
