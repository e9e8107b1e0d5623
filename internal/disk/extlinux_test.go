package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

func TestRenderExtlinuxConf(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "amd64"), Table: "mbr", RootFS: "btrfs", Bootloader: "extlinux", KernelParams: []string{"quiet"}}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := l.Part("root")
	got := RenderExtlinuxConf(l, o, []string{"6.12.9-amd64", "6.1.0-1-amd64"})
	// The serial port is set up before anything else is printed.
	if !strings.HasPrefix(got, "SERIAL 0 115200\n") {
		t.Errorf("extlinux.conf does not start with the serial port:\n%s", got)
	}
	for _, want := range []string{
		"DEFAULT vmdeb-0\n",
		"TIMEOUT 30\n",
		"LABEL vmdeb-0\n\tMENU LABEL Debian GNU/Linux, with Linux 6.12.9-amd64\n\tLINUX /boot/vmlinuz-6.12.9-amd64\n\tINITRD /boot/initrd.img-6.12.9-amd64\n",
		"\tAPPEND root=UUID=" + root.UUID + " ro console=tty0 console=ttyS0,115200n8 quiet\n",
		"LABEL vmdeb-1\n\tMENU LABEL Debian GNU/Linux, with Linux 6.1.0-1-amd64\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("extlinux.conf lacks %q:\n%s", want, got)
		}
	}
	if d := extlinuxDir(l); d != "/boot/extlinux" {
		t.Errorf("extlinux directory %s, want /boot/extlinux", d)
	}

	// A separate /boot: the kernels are at its top.
	o.BootSize = 256 * mib
	l, err = Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	got = RenderExtlinuxConf(l, o, []string{"6.12.9-amd64"})
	if !strings.Contains(got, "\tLINUX /vmlinuz-6.12.9-amd64\n\tINITRD /initrd.img-6.12.9-amd64\n") || extlinuxDir(l) != "/extlinux" {
		t.Errorf("separate /boot (%s):\n%s", extlinuxDir(l), got)
	}
	// A parameter cannot add a directive.
	o.KernelParams = []string{"a\nDEFAULT evil"}
	if got := RenderExtlinuxConf(l, o, []string{"6.12.9-amd64"}); strings.Contains(got, "\nDEFAULT evil") {
		t.Errorf("a line break in a parameter reached extlinux.conf:\n%s", got)
	}
}

func TestExtlinuxArgs(t *testing.T) {
	p := Part{Name: "root", FS: "btrfs", Start: 2048, Sectors: 4096}
	args := extlinuxArgs(p, "disk.raw", "mnt", "/boot/extlinux")
	// Its own mount namespace, so that a killed install leaves no mount,
	// and the loop device's autoclear then frees the loop device too.
	if strings.Join(args[:5], " ") != "--mount --propagation private -- sh" {
		t.Errorf("not in a private mount namespace: %q", args)
	}
	if got := strings.Join(args[len(args)-6:], " "); got != "1048576 2097152 btrfs disk.raw mnt /boot/extlinux" {
		t.Errorf("script arguments %q", got)
	}
	script := args[6]
	for _, want := range []string{"set -eu", `mount -o loop,noatime,offset="$1",sizelimit="$2" -t "$3" -- "$4" "$5"`, `extlinux --install -- "$5$6"`, `umount -- "$5"`} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// The unmount runs whether extlinux succeeds or not.
	if strings.Index(script, "|| rc=$?") > strings.Index(script, "umount") {
		t.Errorf("extlinux's failure skips the unmount:\n%s", script)
	}
	if mbrCode("gpt") != "/usr/lib/syslinux/mbr/gptmbr.bin" || mbrCode("mbr") != "/usr/lib/syslinux/mbr/mbr.bin" {
		t.Errorf("MBR code %s, %s", mbrCode("gpt"), mbrCode("mbr"))
	}
}

// TestBuildBtrfsExtlinux builds a raw MBR image with a btrfs root and
// extlinux from the fake tree, and reads it back without mounting it.
func TestBuildBtrfsExtlinux(t *testing.T) {
	o := Options{Size: 400 * mib, Arch: archOf(t, "amd64"), Table: "mbr", RootFS: "btrfs", Bootloader: "extlinux", Network: "none"}
	needBuild(t, o)
	root := fakeRootfs(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "bx.img")
	if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
		t.Fatal(err)
	}
	onlyEntry(t, dir, "bx.img")
	noLoopsUnder(t, dir)
	if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	label, parts := readTable(t, out)
	if label != "dos" || len(parts) != 1 || !parts[0].Bootable || parts[0].Type != "83" {
		t.Fatalf("table %s %+v", label, parts)
	}
	rootImg := partImage(t, out, parts[0].Start, parts[0].Size)
	run(t, "btrfs", "check", "--readonly", rootImg)
	if got := strings.TrimSpace(run(t, "blkid", "--probe", "--match-tag", "TYPE", "--output", "value", rootImg)); got != "btrfs" {
		t.Errorf("root file system %s, want btrfs", got)
	}
	// extlinux's boot sector at the partition's start, syslinux's MBR code.
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(mbrCode("mbr"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[:mbrCodeSize], code[:mbrCodeSize]) {
		t.Error("the MBR does not hold syslinux's mbr.bin")
	}
	vbr := img[parts[0].Start*512 : parts[0].Start*512+512]
	if vbr[510] != 0x55 || vbr[511] != 0xaa {
		t.Error("no boot sector at the root partition's start")
	}
	// The files, read with btrfs restore (no mount): the menu and ldlinux.
	files := t.TempDir()
	run(t, "btrfs", "restore", "-x", rootImg, files)
	conf := read(t, files, "boot/extlinux/extlinux.conf")
	if !strings.HasPrefix(conf, "SERIAL 0 115200\n") || !strings.Contains(conf, "LINUX /boot/vmlinuz-"+fakeKernel+"\n") {
		t.Errorf("extlinux.conf:\n%s", conf)
	}
	if _, err := os.Stat(filepath.Join(files, "boot/extlinux/ldlinux.c32")); err != nil {
		t.Errorf("extlinux did not install ldlinux.c32: %v", err)
	}
	if got := read(t, files, "etc/fstab"); !strings.Contains(got, "\t/\tbtrfs\tdefaults\t0\t0\n") {
		t.Errorf("fstab:\n%s", got)
	}
	if got := read(t, files, "usr/share/doc/b"); got != read(t, root, "usr/share/doc/a") {
		t.Error("a hard-linked file lost its contents")
	}
}

// TestBuildExtlinuxKilled cancels the build while extlinux is being
// installed (mount and loop device in place): neither may survive.
func TestBuildExtlinuxKilled(t *testing.T) {
	o := Options{Size: 160 * mib, Arch: archOf(t, "amd64"), Table: "mbr", Bootloader: "extlinux", Network: "none"}
	needBuild(t, o)
	// extlinux prints "… is device /dev/loopN" once the file system is
	// mounted: killed there, the umount never runs.
	for _, step := range []string{"unshare", "is device /dev/loop"} {
		t.Run(step, func(t *testing.T) {
			root := fakeRootfs(t)
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &cancelOn{what: step, cancel: cancel}
			err := Build(ctx, buildlog.New(w, "", nil), root, filepath.Join(dir, "k.img"), o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled\n%s", err, w.buf.String())
			}
			onlyEntry(t, dir, "")
			noLoopsUnder(t, dir)
			if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
				t.Errorf("mounts left: %v", m)
			}
		})
	}
}
