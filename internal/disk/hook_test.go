package disk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/chroot"
)

// boardHook writes a fake u-boot at 8 KiB into the image and files into
// the mounted root and its FAT /boot, as board hooks written for
// vmdebootstrap's --customize do.
const boardHook = `#!/bin/sh
set -e
rootdir=$1 image=$2
printf 'FAKE-U-BOOT' | dd of="$image" bs=1k seek=8 conv=notrunc status=none
mkdir -p "$rootdir/boot/dtbs"
echo 'bootcmd' >"$rootdir/boot/boot.scr"
echo "$VMDEB_IMAGE" >"$rootdir/etc/hook-saw-image"
test -d "$rootdir/proc/self"
test -d "$rootdir/boot/efi" || ls "$rootdir/boot" >"$rootdir/etc/hook-saw-boot"
sfdisk --dump "$image" | grep -c '^/' >"$rootdir/etc/hook-saw-partitions"
`

func writeHook(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildBoardHook builds an armhf board image (MBR, a FAT /boot after
// a 4 MiB gap, no boot loader, no kernel) whose image hook writes u-boot
// into the gap and files into both file systems, and reads it all back.
func TestBuildBoardHook(t *testing.T) {
	// 1 GiB: mkfs.fat left to itself would pick FAT32 from the file size.
	o := Options{Size: 1 << 30, Arch: archOf(t, "armhf"), Table: "mbr", BootSize: 32 * mib, BootFS: "vfat",
		PartitionOffset: 4 * mib, Network: "none", Hook: &Hook{Script: writeHook(t, boardHook), Dir: t.TempDir()}}
	needBuild(t, o)
	root := fakeSystemd(t)
	put(t, root, "etc/os-release", "PRETTY_NAME=\"fake\"\n")
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "board.img")
	if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
		t.Fatal(err)
	}
	onlyEntry(t, dir, "board.img")
	noLoopsUnder(t, dir)
	if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(root, "boot/boot.scr")); err == nil {
		t.Error("the hook's files went into the source tree, not the image")
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[8192:8192+11], []byte("FAKE-U-BOOT")) {
		t.Errorf("no u-boot at 8 KiB: %q", img[8192:8192+11])
	}
	label, parts := readTable(t, out)
	if label != "dos" || len(parts) != 2 || parts[0].Start != 4*2048 || parts[0].Type != "e" || !parts[0].Bootable || parts[1].Type != "83" {
		t.Fatalf("table %s %+v", label, parts)
	}
	bootImg := partImage(t, out, parts[0].Start, parts[0].Size)
	if got := run(t, "mtype", "-i", bootImg, "::/boot.scr"); got != "bootcmd\n" {
		t.Errorf("/boot/boot.scr on the FAT: %q", got)
	}
	rootImg := partImage(t, out, parts[1].Start, parts[1].Size)
	run(t, "e2fsck", "-f", "-n", rootImg)
	if got := run(t, "debugfs", "-R", "cat /etc/hook-saw-partitions", rootImg); got != "2\n" {
		t.Errorf("the hook saw %q partitions in the image", got)
	}
	if got := run(t, "debugfs", "-R", "cat /etc/hook-saw-boot", rootImg); !strings.Contains(got, "dtbs") {
		t.Errorf("the hook's /boot: %q", got)
	}
	if got := run(t, "debugfs", "-R", "cat /etc/hook-saw-image", rootImg); !strings.HasSuffix(strings.TrimSpace(got), "disk.raw") {
		t.Errorf("VMDEB_IMAGE was %q", got)
	}
	fstab := run(t, "debugfs", "-R", "cat /etc/fstab", rootImg)
	if !strings.Contains(fstab, "\t/boot\tvfat\t") {
		t.Errorf("fstab does not mount the FAT /boot:\n%s", fstab)
	}
}

// TestBuildHookRefused: a failing hook and one that truncates the image
// fail the build, leaving nothing.
func TestBuildHookRefused(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"fails", "#!/bin/sh\nexit 3\n", "exit status 3"},
		{"truncates", "#!/bin/sh\nprintf x | dd of=\"$2\" bs=1k seek=8 status=none\n", "conv=notrunc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := Options{Size: 96 * mib, Arch: archOf(t, "armhf"), Table: "mbr", Network: "none", Hook: &Hook{Script: writeHook(t, c.body)}}
			needBuild(t, o)
			root := fakeSystemd(t)
			dir := t.TempDir()
			err := Build(context.Background(), testLog(t), root, filepath.Join(dir, "board.img"), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left in the output directory: %v", ents)
			}
			noLoopsUnder(t, dir)
		})
	}
}
