package live

import (
	"fmt"
	"slices"
	"strings"

	"vmdeb/internal/arch"
)

// Entry is one boot menu entry; Kernel and Initrd are paths on the ISO.
// An entry with a Submenu is a submenu of those entries instead (its
// Kernel, Initrd and Params are unused).
type Entry struct {
	Label   string
	Kernel  string
	Initrd  string
	Params  []string
	Default bool
	Submenu []Entry
	// DeviceTree is the ISO path of the device tree GRUB loads for the
	// kernel ("" = none: the firmware's).
	DeviceTree string
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

// isoDTBDir is where the i-th kernel's device trees go on the ISO,
// numbered as its vmlinuz is.
func isoDTBDir(i int) string {
	if i == 0 {
		return "/live/dtbs"
	}
	return fmt.Sprintf("/live/dtbs%d", i+1)
}

// isoDTB is the ISO path of the config's device tree for the i-th kernel,
// "" when the config names none.
func isoDTB(o ISOOptions, i int) string {
	if o.DeviceTree == "" || !o.Arch.DeviceTrees {
		return ""
	}
	return isoDTBDir(i) + "/" + o.DeviceTree
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
		dtb := isoDTB(o, i)
		es = append(es,
			Entry{Label: label, Kernel: vmlinuz, Initrd: initrd, Params: params(liveParams), Default: i == 0, DeviceTree: dtb},
			Entry{Label: safe, Kernel: vmlinuz, Initrd: initrd, Params: params(failsafeParams), DeviceTree: dtb},
		)
	}
	return es
}

// MenuEntries is the whole boot menu, as Debian's live images have it:
// the live and fail-safe entries, then the installer's (when the ISO
// carries it), then a localisation submenu with one live entry per
// language (when o.Locales is set).
func MenuEntries(o ISOOptions, kernels []Kernel) []Entry {
	es := LiveEntries(o, kernels)
	if o.Installer != nil {
		es = append(es, InstallerEntries(o)...)
	}
	if len(o.Locales) > 0 && len(kernels) > 0 {
		es = append(es, LocaleMenu(o))
	}
	return es
}

// InstallerEntries boot debian-installer's own kernel and initrd from
// InstallDir(arch): the text installer, the graphical one and the
// graphical one with a software speech synthesizer, as on Debian's live
// images. The live system's kernel parameters are not theirs.
func InstallerEntries(o ISOOptions) []Entry {
	if o.Installer == nil {
		return nil
	}
	dir := InstallDir(o.Arch.Name)
	// The console goes before "---": what follows it is copied to the
	// installed system's command line. d-i starts on every console, so
	// its first screen is on the serial port too.
	params := func(extra ...string) []string {
		var p []string
		p = append(p, extra...)
		if o.Arch.HasFirmware(arch.BIOS) {
			p = append(p, "vga=788")
		}
		return append(append(p, consoleParams(o.Arch)...), "---", "quiet")
	}
	es := []Entry{{Label: "Install", Kernel: dir + "/vmlinuz", Initrd: dir + "/initrd.gz", Params: params()}}
	if o.Installer.Graphical {
		gk, gi := dir+"/gtk/vmlinuz", dir+"/gtk/initrd.gz"
		es = append(es,
			Entry{Label: "Graphical install", Kernel: gk, Initrd: gi, Params: params()},
			Entry{Label: "Install with speech synthesis", Kernel: gk, Initrd: gi, Params: params("speakup.synth=soft")})
	}
	return es
}

// LocaleMenu is the localisation submenu: the newest kernel's live entry
// once per language, with live-config's locales= and keyboard-layouts=.
func LocaleMenu(o ISOOptions) Entry {
	vmlinuz, initrd := isoKernelPaths(0)
	con := consoleParams(o.Arch)
	m := Entry{Label: "Localisation support"}
	for _, l := range o.Locales {
		lp := []string{"locales=" + l.Locale}
		if l.Keyboard != "" {
			lp = append(lp, "keyboard-layouts="+l.Keyboard)
		}
		m.Submenu = append(m.Submenu, Entry{
			Label:  fmt.Sprintf("%s (%s)", l.Name, l.Locale),
			Kernel: vmlinuz, Initrd: initrd,
			Params:     slices.Concat(liveParams, lp, con, o.KernelParams),
			DeviceTree: isoDTB(o, 0),
		})
	}
	return m
}

// InstallDir is where the installer's files are on the ISO, named per
// architecture as debian-cd names it (/install.amd on amd64).
func InstallDir(archName string) string {
	switch archName {
	case "amd64":
		return "/install.amd"
	case "i386":
		return "/install.386"
	case "arm64":
		return "/install.a64"
	}
	return "/install." + archName
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
	fmt.Fprintf(&b, "default live%d\n", isolinuxLabel(entries, defaultIndex(entries)))
	if o.Title != "" {
		fmt.Fprintf(&b, "menu title %s\n", oneLine(o.Title))
	}
	if o.Splash != "" {
		b.WriteString("menu background splash.png\n")
	}
	n := 0
	writeIsolinuxEntries(&b, entries, defaultIndex(entries), &n, "")
	return b.String()
}

// isolinuxLabel is the number writeIsolinuxEntries gives entries[i]: one
// per entry, submenus and their entries included.
func isolinuxLabel(entries []Entry, i int) int {
	n := 0
	for _, e := range entries[:i] {
		n += 1 + countEntries(e.Submenu)
	}
	return n + 1
}

func countEntries(es []Entry) int {
	n := 0
	for _, e := range es {
		n += 1 + countEntries(e.Submenu)
	}
	return n
}

// writeIsolinuxEntries writes entries, numbering labels live1, live2, ...
// across submenus (labels are global in ISOLINUX).
func writeIsolinuxEntries(b *strings.Builder, entries []Entry, def int, n *int, indent string) {
	for i, e := range entries {
		*n++
		if e.Submenu != nil {
			fmt.Fprintf(b, "\n%smenu begin menu%d\n", indent, *n)
			fmt.Fprintf(b, "%s\tmenu label %s\n", indent, oneLine(e.Label))
			fmt.Fprintf(b, "%s\tmenu title %s\n", indent, oneLine(e.Label))
			writeIsolinuxEntries(b, e.Submenu, -1, n, indent+"\t")
			fmt.Fprintf(b, "\n%s\tlabel back%d\n%s\t\tmenu label Back\n%s\t\tmenu exit\n", indent, *n, indent, indent)
			fmt.Fprintf(b, "%smenu end\n", indent)
			continue
		}
		fmt.Fprintf(b, "\n%slabel live%d\n", indent, *n)
		fmt.Fprintf(b, "%s\tmenu label %s\n", indent, oneLine(e.Label))
		if i == def {
			fmt.Fprintf(b, "%s\tmenu default\n", indent)
		}
		fmt.Fprintf(b, "%s\tlinux %s\n", indent, e.Kernel)
		fmt.Fprintf(b, "%s\tinitrd %s\n", indent, e.Initrd)
		fmt.Fprintf(b, "%s\tappend %s\n", indent, oneLine(strings.Join(e.Params, " ")))
	}
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
	writeGrubEntries(&b, entries, "")
	return b.String()
}

func writeGrubEntries(b *strings.Builder, entries []Entry, indent string) {
	for _, e := range entries {
		if e.Submenu != nil {
			fmt.Fprintf(b, "\n%ssubmenu %s {\n", indent, grubQuote(oneLine(e.Label)))
			writeGrubEntries(b, e.Submenu, indent+"\t")
			fmt.Fprintf(b, "%s}\n", indent)
			continue
		}
		fmt.Fprintf(b, "\n%smenuentry %s {\n", indent, grubQuote(oneLine(e.Label)))
		var ps []string
		for _, p := range e.Params {
			ps = append(ps, grubWord(oneLine(p)))
		}
		fmt.Fprintf(b, "%s\tlinux %s %s\n", indent, e.Kernel, strings.Join(ps, " "))
		fmt.Fprintf(b, "%s\tinitrd %s\n", indent, e.Initrd)
		if e.DeviceTree != "" {
			// After the initrd, as GRUB's own 10_linux writes it.
			fmt.Fprintf(b, "%s\tdevicetree %s\n", indent, grubWord(oneLine(e.DeviceTree)))
		}
		fmt.Fprintf(b, "%s}\n", indent)
	}
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

// Locale is one language of the localisation submenu.
type Locale struct {
	Name     string // the language, in English
	Locale   string // for live-config's locales=, e.g. de_DE.UTF-8
	Keyboard string // for keyboard-layouts=, an X keyboard layout
}

// Locales are the languages of the localisation submenu of Debian's live
// images, each with the keyboard its speakers most often have.
var Locales = []Locale{
	{"Albanian", "sq_AL.UTF-8", "al"},
	{"Arabic", "ar_EG.UTF-8", "ara"},
	{"Asturian", "ast_ES.UTF-8", "es"},
	{"Basque", "eu_ES.UTF-8", "es"},
	{"Belarusian", "be_BY.UTF-8", "by"},
	{"Bosnian", "bs_BA.UTF-8", "ba"},
	{"Brazilian Portuguese", "pt_BR.UTF-8", "br"},
	{"British English", "en_GB.UTF-8", "gb"},
	{"Bulgarian", "bg_BG.UTF-8", "bg"},
	{"Catalan", "ca_ES.UTF-8", "es"},
	{"Chinese (Simplified)", "zh_CN.UTF-8", "cn"},
	{"Chinese (Traditional)", "zh_TW.UTF-8", "tw"},
	{"Croatian", "hr_HR.UTF-8", "hr"},
	{"Czech", "cs_CZ.UTF-8", "cz"},
	{"Danish", "da_DK.UTF-8", "dk"},
	{"Dutch", "nl_NL.UTF-8", "nl"},
	{"English", "en_US.UTF-8", "us"},
	{"Esperanto", "eo.UTF-8", "epo"},
	{"Estonian", "et_EE.UTF-8", "ee"},
	{"Finnish", "fi_FI.UTF-8", "fi"},
	{"French", "fr_FR.UTF-8", "fr"},
	{"Galician", "gl_ES.UTF-8", "es"},
	{"Georgian", "ka_GE.UTF-8", "ge"},
	{"German", "de_DE.UTF-8", "de"},
	{"Greek", "el_GR.UTF-8", "gr"},
	{"Hebrew", "he_IL.UTF-8", "il"},
	{"Hindi", "hi_IN.UTF-8", "in"},
	{"Hungarian", "hu_HU.UTF-8", "hu"},
	{"Icelandic", "is_IS.UTF-8", "is"},
	{"Indonesian", "id_ID.UTF-8", "us"},
	{"Irish", "ga_IE.UTF-8", "ie"},
	{"Italian", "it_IT.UTF-8", "it"},
	{"Japanese", "ja_JP.UTF-8", "jp"},
	{"Kazakh", "kk_KZ.UTF-8", "kz"},
	{"Korean", "ko_KR.UTF-8", "kr"},
	{"Latvian", "lv_LV.UTF-8", "lv"},
	{"Lithuanian", "lt_LT.UTF-8", "lt"},
	{"Macedonian", "mk_MK.UTF-8", "mk"},
	{"Norwegian Bokmål", "nb_NO.UTF-8", "no"},
	{"Persian", "fa_IR.UTF-8", "ir"},
	{"Polish", "pl_PL.UTF-8", "pl"},
	{"Portuguese", "pt_PT.UTF-8", "pt"},
	{"Romanian", "ro_RO.UTF-8", "ro"},
	{"Russian", "ru_RU.UTF-8", "ru"},
	{"Serbian", "sr_RS.UTF-8", "rs"},
	{"Slovak", "sk_SK.UTF-8", "sk"},
	{"Slovenian", "sl_SI.UTF-8", "si"},
	{"Spanish", "es_ES.UTF-8", "es"},
	{"Swedish", "sv_SE.UTF-8", "se"},
	{"Thai", "th_TH.UTF-8", "th"},
	{"Turkish", "tr_TR.UTF-8", "tr"},
	{"Ukrainian", "uk_UA.UTF-8", "ua"},
	{"Vietnamese", "vi_VN.UTF-8", "vn"},
	{"Welsh", "cy_GB.UTF-8", "gb"},
}

// LookupLocales resolves a config's live.locales: locale names from
// Locales (de_DE.UTF-8, or de_DE), or "all" for every one of them, in
// the table's order. It returns the names it does not know.
func LookupLocales(names []string) (ls []Locale, unknown []string) {
	for _, n := range names {
		if n == "all" {
			return slices.Clone(Locales), unknown
		}
	}
	for _, n := range names {
		found := false
		for _, l := range Locales {
			if n == l.Locale || n == strings.TrimSuffix(l.Locale, ".UTF-8") {
				ls = append(ls, l)
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, n)
		}
	}
	return ls, unknown
}
