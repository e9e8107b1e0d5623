package integration

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/apt"
)

// boardHook is a board hook as people wrote them for vmdebootstrap's
// --customize: it writes u-boot (here a stand-in) from its working
// directory into the image ($2) before the first partition, and the
// board's files into the root ($1) and its FAT /boot, with a setting the
// caller exported.
const boardHook = `#!/bin/sh
set -e
rootdir=$1
image=$2
test -n "$BOARD_NAME"
dd if=u-boot-with-spl.bin of="$image" bs=1k seek=8 conv=notrunc status=none
echo "setenv board $BOARD_NAME" >"$rootdir/boot/boot.cmd"
echo "$BOARD_NAME" >"$rootdir/etc/board"
`

// TestBoardImage builds a board image for armhf through the vmdebootstrap
// front end as board image makers ran vmdebootstrap: no kernel (the
// vendor's comes later), no boot loader of its own, a FAT /boot after a
// gap for u-boot, and a --customize script that fills the gap. The image
// has the layout vmdebootstrap made (MBR; /boot first, at the offset,
// active; the root after it), u-boot where the script put it, and the
// script's files in both file systems.
func TestBoardImage(t *testing.T) {
	needRoot(t)
	t.Parallel() // qemu-user bootstrap: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	host, err := apt.DetectHostMirrors("/")
	if err != nil || host.Mirror == "" {
		t.Fatalf("the host's Debian mirror: %q %v", host.Mirror, err)
	}
	cwd := t.TempDir()
	uboot := bytes.Repeat([]byte("U-BOOT-"), 4096) // 28 KiB
	if err := os.WriteFile(filepath.Join(cwd, "u-boot-with-spl.bin"), uboot, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cwd, "board-customise.sh"), []byte(boardHook), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(cwd, "board.img")
	cmd := exec.CommandContext(ctx, vmdeb, "vmdebootstrap", "--image=board.img", "--size=1G", "--arch=armhf",
		"--distribution=trixie", "--mirror="+host.Mirror, "--no-kernel", "--no-extlinux",
		"--bootsize=64M", "--boottype=vfat", "--bootoffset=4MiB", "--user=user/live", "--sudo",
		"--debootstrapopts=variant=minbase", "--package=systemd-sysv",
		"--customize=board-customise.sh")
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "BOARD_NAME=cubietruck")
	r := runCmd(t, cmd, "vmdeb vmdebootstrap (board)")
	if r.code != 0 {
		t.Fatalf("the board image build failed (%d):\n%s", r.code, r.stderr)
	}

	// vmdebootstrap's layout: parted mklabel msdos, mkpart primary fat16
	// from the offset, the root after it, set 1 boot on.
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		PartitionTable struct {
			Label      string       `json:"label"`
			Partitions []sfdiskPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &table); err != nil {
		t.Fatal(err)
	}
	pt := table.PartitionTable
	// --bootsize=64M is vmdebootstrap's 64000000 bytes: 62 MiB once
	// rounded up to whole MiB.
	if pt.Label != "dos" || len(pt.Partitions) != 2 {
		t.Fatalf("partition table %s", out)
	}
	boot, root := pt.Partitions[0], pt.Partitions[1]
	if boot.Start != 4<<11 || boot.Size != 62<<11 || boot.Type != "e" || !boot.Bootable {
		t.Errorf("/boot partition %+v, want start 8192 size 126976 type e (FAT16 LBA) active", boot)
	}
	if root.Start != boot.Start+boot.Size || root.Type != "83" || root.Bootable {
		t.Errorf("root partition %+v", root)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[8192:8192+len(uboot)], uboot) {
		t.Error("u-boot is not at 8 KiB, where the script wrote it")
	}

	part := func(p sfdiskPart, name string) string {
		f := filepath.Join(t.TempDir(), name)
		if o, err := exec.Command("dd", "if="+img, "of="+f, "bs=512", "skip="+strconv.FormatInt(p.Start, 10),
			"count="+strconv.FormatInt(p.Size, 10), "conv=sparse", "status=none").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v %s", err, o)
		}
		return f
	}
	fat := part(boot, "boot.vfat")
	if o, err := exec.Command("mtype", "-i", fat, "::/boot.cmd").CombinedOutput(); err != nil || string(o) != "setenv board cubietruck\n" {
		t.Errorf("/boot/boot.cmd on the FAT: %v %q", err, o)
	}
	ext := part(root, "root.ext4")
	if o, err := exec.Command("e2fsck", "-f", "-n", ext).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, o)
	}
	cat := func(p string) string {
		o, _ := exec.Command("debugfs", "-R", "cat "+p, ext).Output()
		return string(o)
	}
	if got := cat("/etc/board"); got != "cubietruck\n" {
		t.Errorf("/etc/board %q: the script's file, with the caller's BOARD_NAME", got)
	}
	if fstab := cat("/etc/fstab"); !strings.Contains(fstab, "\t/boot\tvfat\t") {
		t.Errorf("fstab does not mount the FAT /boot:\n%s", fstab)
	}
	if status := cat("/var/lib/dpkg/status"); strings.Contains(status, "Package: linux-image") || !strings.Contains(status, "Package: systemd-sysv") {
		t.Error("--no-kernel: a kernel is installed, or the init is missing")
	}
	bash := filepath.Join(t.TempDir(), "bash")
	if o, err := exec.Command("debugfs", "-R", "dump /usr/bin/bash "+bash, ext).CombinedOutput(); err != nil {
		t.Fatalf("debugfs dump: %v %s", err, o)
	}
	if f, err := elf.Open(bash); err != nil || f.Machine != elf.EM_ARM {
		t.Errorf("/usr/bin/bash is not an ARM program: %v", err)
	}
}

// sfdiskPart is a partition as sfdisk --json gives it.
type sfdiskPart struct {
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	Bootable bool   `json:"bootable"`
}
