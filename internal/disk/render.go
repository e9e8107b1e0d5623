package disk

import (
	"fmt"
	"path"
	"strings"

	"vmdeb/internal/arch"
	"vmdeb/internal/live"
)

// RenderFstab is the image's /etc/fstab: every file system by UUID, the
// root first, then what is mounted below it, then swap.
func RenderFstab(l Layout) string {
	var b strings.Builder
	b.WriteString("# /etc/fstab: static file system information, written by vmdeb.\n")
	b.WriteString("# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n")
	line := func(p Part, mount, opts string, pass int) {
		fmt.Fprintf(&b, "UUID=%s\t%s\t%s\t%s\t0\t%d\n", p.UUID, mount, p.FS, opts, pass)
	}
	if p, _, ok := l.Part("root"); ok {
		opts := "defaults"
		if strings.HasPrefix(p.FS, "ext") {
			opts = "errors=remount-ro" // an ext-only option
		}
		line(p, "/", opts, fsckPass(p.FS, true))
	}
	if p, _, ok := l.Part("boot"); ok {
		line(p, "/boot", "defaults", fsckPass(p.FS, false))
	}
	if p, _, ok := l.Part("esp"); ok {
		// Only root may read the ESP: it can hold secrets (boot keys).
		line(p, "/boot/efi", "umask=0077", 1)
	}
	if p, _, ok := l.Part("swap"); ok {
		line(p, "none", "sw", 0)
	}
	return b.String()
}

// ConsoleParams are the console= parameters for a: the screen, then the
// serial port last, so that /dev/console (boot messages, emergency shells)
// is the serial line a VM is usually watched on.
func ConsoleParams(a arch.Arch) []string {
	if a.Console == "" {
		return []string{"console=tty0"}
	}
	c := "console=" + a.Console
	if strings.HasPrefix(a.Console, "ttyS") {
		// A PC UART needs its speed; PL011 and hvc take the firmware's.
		c += ",115200n8"
	}
	return []string{"console=tty0", c}
}

// KernelCmdline is the command line of every entry: the root by UUID,
// read-only until fsck ran, the consoles and the config's parameters.
func KernelCmdline(l Layout, o Options) []string {
	root, _, _ := l.Part("root")
	return append(append([]string{"root=UUID=" + root.UUID, "ro"}, ConsoleParams(o.Arch)...), o.KernelParams...)
}

// RenderGrubCfg is /boot/grub/grub.cfg: one entry per kernel (versions
// newest first, the first one the default), kernels read from the boot
// file system found by UUID, the menu on the screen and on a PC's serial
// port.
func RenderGrubCfg(l Layout, o Options, kernels []string) string {
	boot := l.BootPart()
	dir := "/boot"
	if boot.Mount == "/boot" {
		dir = "" // the kernels are at the top of a separate /boot
	}
	var b strings.Builder
	b.WriteString("# GRUB menu, written by vmdeb.\n")
	fmt.Fprintf(&b, "search --no-floppy --fs-uuid --set=root %s\n", boot.UUID)
	terms := "console"
	if strings.HasPrefix(o.Arch.Console, "ttyS") {
		b.WriteString("serial --unit=0 --speed=115200\n")
		terms = "console serial"
	}
	fmt.Fprintf(&b, "terminal_input %s\nterminal_output %s\n", terms, terms)
	b.WriteString("set timeout=3\nset default=0\n")
	// Without a video driver GRUB's EFI linux loader leaves the kernel
	// no framebuffer: the screen stays black.
	b.WriteString("if [ \"${grub_platform}\" = \"efi\" ]; then\n\tinsmod all_video\nfi\n")
	dtbRoot := ""
	if o.DeviceTree != "" && boot.Mount == "/boot" {
		// The device trees stay in /usr/lib on the root file system.
		root, _, _ := l.Part("root")
		fmt.Fprintf(&b, "search --no-floppy --fs-uuid --set=dtbroot %s\n", root.UUID)
		dtbRoot = "($dtbroot)"
	}
	var params []string
	for _, p := range KernelCmdline(l, o) {
		params = append(params, grubWord(oneLine(p)))
	}
	for i, v := range kernels {
		label := "Debian GNU/Linux, with Linux " + v
		fmt.Fprintf(&b, "\nmenuentry %s --id vmdeb-%d {\n", grubQuote(oneLine(label)), i)
		fmt.Fprintf(&b, "\tlinux %s %s\n", grubWord(dir+"/vmlinuz-"+v), strings.Join(params, " "))
		fmt.Fprintf(&b, "\tinitrd %s\n", grubWord(dir+"/initrd.img-"+v))
		if o.DeviceTree != "" {
			fmt.Fprintf(&b, "\tdevicetree %s%s\n", dtbRoot, grubWord(oneLine(path.Join("/", live.DTBDir(v), o.DeviceTree))))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// earlyGrubCfg is the config built into the core image (BIOS) and the EFI
// loader: find the boot file system by UUID and take the modules and the
// menu from it. Plain commands only: no script parser is loaded yet.
func earlyGrubCfg(l Layout) string {
	boot := l.BootPart()
	prefix := "/boot/grub"
	if boot.Mount == "/boot" {
		prefix = "/grub"
	}
	return fmt.Sprintf("search.fs_uuid %s root\nset prefix=($root)%s\n", boot.UUID, prefix)
}

// grubQuote single-quotes s for grub.cfg, where nothing inside single
// quotes is special.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// grubWord quotes a word only when GRUB would otherwise expand or split it.
func grubWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=._,:/+-@%~") == "" {
		return s
	}
	return grubQuote(s)
}

// oneLine keeps a value on its line: a newline would add directives.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
