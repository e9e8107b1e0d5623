package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// syslinuxMBRDir holds syslinux's MBR boot code (syslinux-common): mbr.bin
// boots the active partition of an MBR table, gptmbr.bin the one with the
// LegacyBIOSBootable attribute on a GPT.
const syslinuxMBRDir = "/usr/lib/syslinux/mbr"

// mbrCodeSize is the boot code area of sector 0, before the disk
// signature and the partition table.
const mbrCodeSize = 440

func mbrCode(table PartitionTable) string {
	if table == GPT {
		return filepath.Join(syslinuxMBRDir, "gptmbr.bin")
	}
	return filepath.Join(syslinuxMBRDir, "mbr.bin")
}

// extlinuxDir is where extlinux.conf and ldlinux.* go, relative to the
// boot file system's top.
func extlinuxDir(l Layout) string {
	if l.BootPart().Mount == "/boot" {
		return "/extlinux"
	}
	return "/boot/extlinux"
}

// RenderExtlinuxConf is extlinux.conf: one entry per kernel (versions
// newest first, the first one the default), on the screen and the first
// serial port, with a short prompt to choose another.
func RenderExtlinuxConf(l Layout, o Options, kernels []string) string {
	dir := "/boot"
	if l.BootPart().Mount == "/boot" {
		dir = ""
	}
	var b strings.Builder
	// SERIAL must come first to take effect before anything is printed.
	if strings.HasPrefix(o.Arch.Console, "ttyS") {
		fmt.Fprintf(&b, "SERIAL %s 115200\n", strings.TrimPrefix(o.Arch.Console, "ttyS"))
	}
	b.WriteString("# extlinux menu, written by vmdeb.\n")
	b.WriteString("PROMPT 1\nTIMEOUT 30\nDEFAULT vmdeb-0\n")
	// extlinux's parser takes the rest of an APPEND line as it is: only a
	// line break could add a directive.
	cmdline := oneLine(strings.Join(KernelCmdline(l, o), " "))
	for i, v := range kernels {
		fmt.Fprintf(&b, "\nLABEL vmdeb-%d\n", i)
		fmt.Fprintf(&b, "\tMENU LABEL Debian GNU/Linux, with Linux %s\n", oneLine(v))
		fmt.Fprintf(&b, "\tLINUX %s/vmlinuz-%s\n", dir, oneLine(v))
		fmt.Fprintf(&b, "\tINITRD %s/initrd.img-%s\n", dir, oneLine(v))
		fmt.Fprintf(&b, "\tAPPEND %s\n", cmdline)
	}
	return b.String()
}

// extlinuxConf writes extlinux.conf into the staged tree, so that it is
// part of the file system from the start.
func (b *builder) extlinuxConf() error {
	if !b.o.extlinux() {
		return nil
	}
	if len(b.kernels) == 0 {
		return errors.New("the root file system has no kernel in /boot for extlinux to boot")
	}
	return root(b.stage).write("boot/extlinux/extlinux.conf", RenderExtlinuxConf(b.l, b.o, b.kernels), 0o644)
}

// extlinuxScript mounts the boot file system from the image, installs
// extlinux into it and unmounts it. It runs as the only process of its own
// mount namespace (unshare), and mount(8) gives its loop device the
// autoclear flag: should anything kill it, the mount dies with the
// namespace and the loop device with the mount. Nothing is left either way.
const extlinuxScript = `set -eu
mount -o loop,noatime,offset="$1",sizelimit="$2" -t "$3" -- "$4" "$5"
rc=0
extlinux --install -- "$5$6" || rc=$?
umount -- "$5"
exit $rc
`

// extlinuxArgs is the command that installs extlinux into partition p of
// img (both relative to the build's directory), mounting it on mnt.
func extlinuxArgs(p Part, img, mnt, dir string) []string {
	return []string{"--mount", "--propagation", "private", "--", "sh", "-c", extlinuxScript, "vmdeb-extlinux",
		itoa(p.Offset()), itoa(p.Bytes()), p.FS, img, mnt, dir}
}

// extlinuxInstall puts syslinux's boot code in the MBR and installs
// extlinux into the boot file system. extlinux finds the sectors of its
// ldlinux.sys through the mounted file system, so this is the one step of
// a disk build with a mount and a loop device (see extlinuxScript).
func (b *builder) extlinuxInstall() error {
	if !b.o.extlinux() {
		return nil
	}
	code, err := os.ReadFile(mbrCode(b.l.Table))
	if err != nil {
		return err
	}
	if len(code) < mbrCodeSize {
		return fmt.Errorf("%s has %d bytes, want %d", mbrCode(b.l.Table), len(code), mbrCodeSize)
	}
	f, err := os.OpenFile(filepath.Join(b.tmp, b.img), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(code[:mbrCodeSize], 0)
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	mnt := "mnt"
	if err := os.Mkdir(filepath.Join(b.tmp, mnt), 0o700); err != nil {
		return err
	}
	boot := b.l.BootPart()
	b.log.Printf("extlinux: %s on %s, syslinux's %s in the MBR", extlinuxDir(b.l), boot.Mount, filepath.Base(mbrCode(b.l.Table)))
	if err := b.runTool("unshare", extlinuxArgs(boot, b.img, mnt, extlinuxDir(b.l))); err != nil {
		return err
	}
	return os.Remove(filepath.Join(b.tmp, mnt))
}

// checkExtlinux reads the MBR code and the boot file system's boot sector
// back: syslinux's code and a boot signature where extlinux wrote them.
func (b *builder) checkExtlinux() error {
	code, err := os.ReadFile(mbrCode(b.l.Table))
	if err != nil {
		return err
	}
	mbr, err := b.readImage(0, sector)
	if err != nil {
		return err
	}
	if !bytes.Equal(mbr[:mbrCodeSize], code[:mbrCodeSize]) || mbr[bootSignature] != 0x55 || mbr[bootSignature+1] != 0xaa {
		return fmt.Errorf("the MBR does not hold syslinux's %s", filepath.Base(mbrCode(b.l.Table)))
	}
	vbr, err := b.readImage(b.l.BootPart().Offset(), sector)
	if err != nil {
		return err
	}
	if vbr[bootSignature] != 0x55 || vbr[bootSignature+1] != 0xaa {
		return fmt.Errorf("the %s partition has no extlinux boot sector", b.l.BootPart().Name)
	}
	return nil
}
