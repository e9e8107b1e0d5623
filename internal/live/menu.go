package live

import (
	"fmt"
	"slices"
	"strings"

	"vmdeb/internal/arch"
)

// Entry is one boot menu entry; Kernel and Initrd are paths on the ISO.
type Entry struct {
	Label   string
	Kernel  string
	Initrd  string
	Params  []string
	Default bool
}

// Kernel command lines, as live-build writes them for Debian's images.
var (
	liveParams     = []string{"boot=live", "components", "quiet", "splash"}
	failsafeParams = []string{"boot=live", "components", "memtest", "noapic", "noapm", "nodma", "nomce", "nolapic", "nomodeset", "nosmp", "nosplash"}
)

// isoKernelPaths are where the i-th kernel (newest first) goes on the ISO:
// the newest under the names live-boot's documentation and users expect,
// the others numbered as live-build does, which keeps the names plain
// ISO 9660 for loaders that ignore Rock Ridge.
func isoKernelPaths(i int) (vmlinuz, initrd string) {
	if i == 0 {
		return "/live/vmlinuz", "/live/initrd.img"
	}
	return fmt.Sprintf("/live/vmlinuz%d", i+1), fmt.Sprintf("/live/initrd%d.img", i+1)
}

// consoleParams put the kernel's console on the serial port as well as the
// screen: the boot test, and anyone with a headless machine, reads the
// serial line. The last console= is /dev/console; getty runs on both.
func consoleParams(a arch.Arch) []string {
	if a.Console == "" {
		return []string{"console=tty0"}
	}
	c := "console=" + a.Console
	if strings.HasPrefix(a.Console, "ttyS") {
		// A PC UART needs its speed; PL011 and hvc consoles take the
		// firmware's.
		c += ",115200n8"
	}
	return []string{c, "console=tty0"}
}

// LiveEntries is the boot menu for kernels (newest first): for each, the
// live system and a fail-safe variant, the newest kernel's live entry first
// and default. KernelParams go on every entry, fail-safe included, because
// they usually carry what the user needs either way (locale, keyboard).
func LiveEntries(o ISOOptions, kernels []Kernel) []Entry {
	var es []Entry
	con := consoleParams(o.Arch)
	for i, k := range kernels {
		vmlinuz, initrd := isoKernelPaths(i)
		var what []string
		if o.Arch.Name != "" {
			what = append(what, o.Arch.Name)
		}
		if len(kernels) > 1 {
			what = append(what, "kernel "+k.Version)
		}
		label := "Live system"
		if len(what) > 0 {
			label += " (" + strings.Join(what, ", ") + ")"
		}
		safe := "Live system (" + strings.Join(slices.Concat(what, []string{"fail-safe mode"}), ", ") + ")"
		params := func(base []string) []string { return slices.Concat(base, con, o.KernelParams) }
		es = append(es,
			Entry{Label: label, Kernel: vmlinuz, Initrd: initrd, Params: params(liveParams), Default: i == 0},
			Entry{Label: safe, Kernel: vmlinuz, Initrd: initrd, Params: params(failsafeParams)},
		)
	}
	return es
}

// oneLine keeps a config value on its line: a newline in a title or a
// parameter would otherwise add directives to the boot loader's config.
func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// defaultIndex is the first entry marked Default, or 0.
func defaultIndex(entries []Entry) int {
	for i, e := range entries {
		if e.Default {
			return i
		}
	}
	return 0
}

// RenderIsolinux is isolinux.cfg for the BIOS boot: a menu (graphical with
// a splash) that boots the default entry after 5 seconds, on the screen
// and the first serial port.
func RenderIsolinux(o ISOOptions, entries []Entry) string {
	var b strings.Builder
	// "serial" must come first for ISOLINUX to talk on the port at all.
	b.WriteString("serial 0 115200\n")
	ui := "menu.c32"
	if o.Splash != "" {
		ui = "vesamenu.c32"
	}
	fmt.Fprintf(&b, "ui %s\nprompt 0\ntimeout 50\n", ui)
	fmt.Fprintf(&b, "default live%d\n", defaultIndex(entries)+1)
	if o.Title != "" {
		fmt.Fprintf(&b, "menu title %s\n", oneLine(o.Title))
	}
	if o.Splash != "" {
		b.WriteString("menu background splash.png\n")
	}
	def := defaultIndex(entries)
	for i, e := range entries {
		fmt.Fprintf(&b, "\nlabel live%d\n", i+1)
		fmt.Fprintf(&b, "\tmenu label %s\n", oneLine(e.Label))
		if i == def {
			b.WriteString("\tmenu default\n")
		}
		fmt.Fprintf(&b, "\tlinux %s\n", e.Kernel)
		fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
		fmt.Fprintf(&b, "\tappend %s\n", oneLine(strings.Join(e.Params, " ")))
	}
	return b.String()
}

// grubFont and grubSplash are the ISO paths GRUB's graphical menu reads.
const (
	grubFont   = "/boot/grub/fonts/unicode.pf2"
	grubSplash = "/boot/grub/splash.png"
)

// RenderGrub is grub.cfg for the UEFI boot, the same menu as ISOLINUX's.
// On a PC the menu is also on the first serial port; other machines' UEFI
// already puts its console on their serial port, and their GRUB has no
// port-I/O UART to add.
func RenderGrub(o ISOOptions, entries []Entry) string {
	var b strings.Builder
	if o.Title != "" {
		fmt.Fprintf(&b, "# %s\n", oneLine(o.Title))
	}
	terms := "console"
	if strings.HasPrefix(o.Arch.Console, "ttyS") {
		b.WriteString("serial --unit=0 --speed=115200\n")
		terms = "console serial"
	}
	fmt.Fprintf(&b, "terminal_input %s\nterminal_output %s\n", terms, terms)
	fmt.Fprintf(&b, "set timeout=5\nset default=%d\n", defaultIndex(entries))
	if o.Splash != "" {
		// Without the font gfxterm shows nothing: keep the text menu then.
		fmt.Fprintf(&b, "if loadfont %s; then\n", grubFont)
		b.WriteString("\tinsmod all_video\n\tinsmod gfxterm\n\tinsmod png\n\tset gfxmode=auto\n")
		fmt.Fprintf(&b, "\tterminal_output %s\n", strings.Replace(terms, "console", "gfxterm", 1))
		fmt.Fprintf(&b, "\tbackground_image %s\n", grubSplash)
		b.WriteString("fi\n")
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "\nmenuentry %s {\n", grubQuote(oneLine(e.Label)))
		var ps []string
		for _, p := range e.Params {
			ps = append(ps, grubWord(oneLine(p)))
		}
		fmt.Fprintf(&b, "\tlinux %s %s\n", e.Kernel, strings.Join(ps, " "))
		fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
		b.WriteString("}\n")
	}
	return b.String()
}

// grubQuote single-quotes s for grub.cfg, where nothing inside single
// quotes is special.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// grubWord quotes a kernel parameter only when GRUB would otherwise expand
// or split it ($, quotes, spaces, ...), so ordinary command lines stay
// readable.
func grubWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=._,:/+-@%") == "" {
		return s
	}
	return grubQuote(s)
}
