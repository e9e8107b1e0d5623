package live

import (
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/arch"
)

func mustArch(t *testing.T, name string) arch.Arch {
	t.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLiveEntries(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "amd64"), KernelParams: []string{"locales=de_DE.UTF-8"}}
	es := LiveEntries(o, []Kernel{{Version: "6.12.38+deb13-amd64"}})
	if len(es) != 2 {
		t.Fatalf("%d entries, want live + fail-safe", len(es))
	}
	live, safe := es[0], es[1]
	if !live.Default || safe.Default {
		t.Errorf("default: live %v, fail-safe %v", live.Default, safe.Default)
	}
	if live.Label != "Live system (amd64)" || safe.Label != "Live system (amd64, fail-safe mode)" {
		t.Errorf("labels %q, %q", live.Label, safe.Label)
	}
	for _, e := range es {
		if e.Kernel != "/live/vmlinuz" || e.Initrd != "/live/initrd.img" {
			t.Errorf("%s: kernel %s initrd %s", e.Label, e.Kernel, e.Initrd)
		}
		// The boot test reads ttyS0: every entry must put a console there.
		for _, p := range []string{"boot=live", "components", "console=ttyS0,115200n8", "console=tty0", "locales=de_DE.UTF-8"} {
			if !slices.Contains(e.Params, p) {
				t.Errorf("%s lacks %s: %q", e.Label, p, e.Params)
			}
		}
	}
	if got := strings.Join(live.Params, " "); got != "boot=live components quiet splash console=ttyS0,115200n8 console=tty0 locales=de_DE.UTF-8" {
		t.Errorf("live params %q", got)
	}
	if got := strings.Join(safe.Params, " "); got != "boot=live components memtest noapic noapm nodma nomce nolapic nomodeset nosmp nosplash console=ttyS0,115200n8 console=tty0 locales=de_DE.UTF-8" {
		t.Errorf("fail-safe params %q", got)
	}
}

func TestLiveEntriesSeveralKernels(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "amd64")}
	es := LiveEntries(o, []Kernel{{Version: "6.12.40"}, {Version: "6.12.38"}})
	if len(es) != 4 {
		t.Fatalf("%d entries", len(es))
	}
	want := []struct{ label, kernel, initrd string }{
		{"Live system (amd64, kernel 6.12.40)", "/live/vmlinuz", "/live/initrd.img"},
		{"Live system (amd64, kernel 6.12.40, fail-safe mode)", "/live/vmlinuz", "/live/initrd.img"},
		{"Live system (amd64, kernel 6.12.38)", "/live/vmlinuz2", "/live/initrd2.img"},
		{"Live system (amd64, kernel 6.12.38, fail-safe mode)", "/live/vmlinuz2", "/live/initrd2.img"},
	}
	for i, w := range want {
		if es[i].Label != w.label || es[i].Kernel != w.kernel || es[i].Initrd != w.initrd {
			t.Errorf("entry %d = %+v, want %+v", i, es[i], w)
		}
		if es[i].Default != (i == 0) {
			t.Errorf("entry %d default = %v", i, es[i].Default)
		}
	}
}

func TestLiveEntriesArm64Console(t *testing.T) {
	es := LiveEntries(ISOOptions{Arch: mustArch(t, "arm64")}, []Kernel{{Version: "1"}})
	for _, e := range es {
		if !slices.Contains(e.Params, "console=ttyAMA0") || !slices.Contains(e.Params, "console=tty0") {
			t.Errorf("%s: %q", e.Label, e.Params)
		}
		for _, p := range e.Params {
			if strings.HasPrefix(p, "console=ttyS") {
				t.Errorf("arm64 entry has %s", p)
			}
		}
	}
}

func TestRenderIsolinux(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "amd64"), Title: "Debian GNU/Linux trixie (amd64)"}
	cfg := RenderIsolinux(o, LiveEntries(o, []Kernel{{Version: "1.0-amd64"}}))
	if !strings.HasPrefix(cfg, "serial 0 115200\n") {
		t.Errorf("serial is not the first directive:\n%s", cfg)
	}
	for _, want := range []string{
		"\nui menu.c32\n", "\nprompt 0\n", "\ntimeout 50\n", "\ndefault live1\n",
		"\nmenu title Debian GNU/Linux trixie (amd64)\n",
		"\nlabel live1\n\tmenu label Live system (amd64)\n\tmenu default\n\tlinux /live/vmlinuz\n\tinitrd /live/initrd.img\n\tappend boot=live components quiet splash console=ttyS0,115200n8 console=tty0\n",
		"\nlabel live2\n\tmenu label Live system (amd64, fail-safe mode)\n\tlinux /live/vmlinuz\n",
		"append boot=live components memtest noapic noapm nodma nomce nolapic nomodeset nosmp nosplash console=ttyS0,115200n8 console=tty0\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("isolinux.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "vesamenu") || strings.Contains(cfg, "background") {
		t.Errorf("graphical menu without a splash:\n%s", cfg)
	}
	if strings.Count(cfg, "menu default") != 1 {
		t.Errorf("want one default:\n%s", cfg)
	}

	o.Splash = "/some/splash.png"
	cfg = RenderIsolinux(o, LiveEntries(o, []Kernel{{Version: "1.0-amd64"}}))
	for _, want := range []string{"\nui vesamenu.c32\n", "\nmenu background splash.png\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("splash: isolinux.cfg lacks %q:\n%s", want, cfg)
		}
	}
}

func TestRenderIsolinuxOneLine(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "amd64"), Title: "T\nui evil.c32", KernelParams: []string{"a\nlabel x"}}
	cfg := RenderIsolinux(o, LiveEntries(o, []Kernel{{Version: "1"}}))
	for _, l := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(l, "ui evil") || strings.HasPrefix(l, "label x") {
			t.Errorf("a newline in a value made a directive:\n%s", cfg)
		}
	}
}

func TestRenderGrub(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "amd64"), Title: "Debian GNU/Linux trixie (amd64)", KernelParams: []string{"hostname=$x"}}
	cfg := RenderGrub(o, LiveEntries(o, []Kernel{{Version: "1.0-amd64"}}))
	for _, want := range []string{
		"serial --unit=0 --speed=115200\n",
		"terminal_input console serial\n",
		"terminal_output console serial\n",
		"set timeout=5\n", "set default=0\n",
		"menuentry 'Live system (amd64)' {\n\tlinux /live/vmlinuz boot=live components quiet splash console=ttyS0,115200n8 console=tty0 'hostname=$x'\n\tinitrd /live/initrd.img\n}\n",
		"menuentry 'Live system (amd64, fail-safe mode)' {\n\tlinux /live/vmlinuz boot=live components memtest noapic noapm nodma nomce nolapic nomodeset nosmp nosplash console=ttyS0,115200n8 console=tty0",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Index(cfg, "serial --unit") > strings.Index(cfg, "terminal_input") {
		t.Errorf("serial must be set up before it is used:\n%s", cfg)
	}
	if strings.Contains(cfg, "gfxterm") || strings.Contains(cfg, "background_image") {
		t.Errorf("graphical menu without a splash:\n%s", cfg)
	}

	o.Splash = "/some/splash.png"
	cfg = RenderGrub(o, LiveEntries(o, []Kernel{{Version: "1.0-amd64"}}))
	for _, want := range []string{
		"if loadfont /boot/grub/fonts/unicode.pf2; then\n",
		"\tterminal_output gfxterm serial\n",
		"\tbackground_image /boot/grub/splash.png\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("splash: grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
}

func TestRenderGrubArm64(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "arm64")}
	cfg := RenderGrub(o, LiveEntries(o, []Kernel{{Version: "1"}}))
	if strings.Contains(cfg, "serial") {
		t.Errorf("arm64 GRUB has no PC UART:\n%s", cfg)
	}
	if !strings.Contains(cfg, "terminal_output console\n") || !strings.Contains(cfg, "console=ttyAMA0 console=tty0") {
		t.Errorf("arm64 grub.cfg:\n%s", cfg)
	}
}

func TestGrubQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"boot=live":              "boot=live",
		"console=ttyS0,115200n8": "console=ttyS0,115200n8",
		"a=$b":                   "'a=$b'",
		"it's":                   `'it'\''s'`,
		"a b":                    "'a b'",
		"":                       "''",
	} {
		if got := grubWord(in); got != want {
			t.Errorf("grubWord(%q) = %s, want %s", in, got, want)
		}
	}
	if got := grubQuote("Debian's live"); got != `'Debian'\''s live'` {
		t.Errorf("grubQuote = %s", got)
	}
}

func installerOptions(t *testing.T) ISOOptions {
	return ISOOptions{
		Arch: mustArch(t, "amd64"), Title: "Debian live", KernelParams: []string{"hostname=x"},
		Installer: &InstallerFiles{Dir: "/unused", Graphical: true},
		Locales:   []Locale{{"German", "de_DE.UTF-8", "de"}, {"Esperanto", "eo.UTF-8", ""}},
	}
}

func TestMenuEntries(t *testing.T) {
	o := installerOptions(t)
	es := MenuEntries(o, []Kernel{{Version: "1"}})
	var labels []string
	for _, e := range es {
		labels = append(labels, e.Label)
	}
	want := []string{"Live system (amd64)", "Live system (amd64, fail-safe mode)", "Install", "Graphical install", "Install with speech synthesis", "Localisation support"}
	if !slices.Equal(labels, want) {
		t.Fatalf("menu %q, want %q", labels, want)
	}
	inst, gui, speech, loc := es[2], es[3], es[4], es[5]
	// d-i's own kernel and initrd, where debian-cd puts them.
	if inst.Kernel != "/install.amd/vmlinuz" || inst.Initrd != "/install.amd/initrd.gz" {
		t.Errorf("Install boots %s %s", inst.Kernel, inst.Initrd)
	}
	for _, e := range []Entry{gui, speech} {
		if e.Kernel != "/install.amd/gtk/vmlinuz" || e.Initrd != "/install.amd/gtk/initrd.gz" {
			t.Errorf("%s boots %s %s", e.Label, e.Kernel, e.Initrd)
		}
	}
	// The serial console (the boot test's) before "---", nothing of the
	// live system's parameters.
	if got := strings.Join(inst.Params, " "); got != "vga=788 console=ttyS0,115200n8 console=tty0 --- quiet" {
		t.Errorf("Install params %q", got)
	}
	if got := strings.Join(gui.Params, " "); got != "vga=788 console=ttyS0,115200n8 console=tty0 --- quiet" {
		t.Errorf("Graphical install params %q", got)
	}
	if got := strings.Join(speech.Params, " "); got != "speakup.synth=soft vga=788 console=ttyS0,115200n8 console=tty0 --- quiet" {
		t.Errorf("speech params %q", got)
	}
	for _, e := range es[2:5] {
		if e.Default || slices.Contains(e.Params, "boot=live") || slices.Contains(e.Params, "hostname=x") {
			t.Errorf("%s: %+v", e.Label, e)
		}
	}

	if len(loc.Submenu) != 2 {
		t.Fatalf("localisation submenu: %+v", loc.Submenu)
	}
	de, eo := loc.Submenu[0], loc.Submenu[1]
	if de.Label != "German (de_DE.UTF-8)" || de.Kernel != "/live/vmlinuz" || de.Initrd != "/live/initrd.img" {
		t.Errorf("German entry %+v", de)
	}
	if got := strings.Join(de.Params, " "); got != "boot=live components quiet splash locales=de_DE.UTF-8 keyboard-layouts=de console=ttyS0,115200n8 console=tty0 hostname=x" {
		t.Errorf("German params %q", got)
	}
	if slices.ContainsFunc(eo.Params, func(p string) bool { return strings.HasPrefix(p, "keyboard-layouts=") }) {
		t.Errorf("a locale without a keyboard sets one: %q", eo.Params)
	}
}

func TestMenuEntriesOptional(t *testing.T) {
	o := installerOptions(t)
	o.Installer.Graphical = false
	o.Locales = nil
	es := MenuEntries(o, []Kernel{{Version: "1"}})
	if len(es) != 3 || es[2].Label != "Install" {
		t.Errorf("text installer only, no locales: %+v", es)
	}
	o.Installer = nil
	if es := MenuEntries(o, []Kernel{{Version: "1"}}); len(es) != 2 {
		t.Errorf("no installer: %+v", es)
	}
	// arm64: no vga=, its own console, the installer under /install.a64.
	a := ISOOptions{Arch: mustArch(t, "arm64"), Installer: &InstallerFiles{}}
	in := InstallerEntries(a)
	if len(in) != 1 || in[0].Kernel != "/install.a64/vmlinuz" || strings.Join(in[0].Params, " ") != "console=ttyAMA0 console=tty0 --- quiet" {
		t.Errorf("arm64 installer entries: %+v", in)
	}
}

func TestRenderIsolinuxInstallerAndLocales(t *testing.T) {
	o := installerOptions(t)
	cfg := RenderIsolinux(o, MenuEntries(o, []Kernel{{Version: "1"}}))
	for _, want := range []string{
		"\ndefault live1\n",
		"\nlabel live3\n\tmenu label Install\n\tlinux /install.amd/vmlinuz\n\tinitrd /install.amd/initrd.gz\n\tappend vga=788 console=ttyS0,115200n8 console=tty0 --- quiet\n",
		"\nlabel live4\n\tmenu label Graphical install\n\tlinux /install.amd/gtk/vmlinuz\n\tinitrd /install.amd/gtk/initrd.gz\n",
		"\nlabel live5\n\tmenu label Install with speech synthesis\n",
		"\nmenu begin menu6\n\tmenu label Localisation support\n\tmenu title Localisation support\n",
		"\n\tlabel live7\n\t\tmenu label German (de_DE.UTF-8)\n\t\tlinux /live/vmlinuz\n\t\tinitrd /live/initrd.img\n\t\tappend boot=live components quiet splash locales=de_DE.UTF-8 keyboard-layouts=de ",
		"\n\tlabel live8\n\t\tmenu label Esperanto (eo.UTF-8)\n",
		"\n\tlabel back8\n\t\tmenu label Back\n\t\tmenu exit\nmenu end\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("isolinux.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Count(cfg, "menu default") != 1 || strings.Count(cfg, "menu begin") != strings.Count(cfg, "menu end") {
		t.Errorf("isolinux.cfg structure:\n%s", cfg)
	}
	// Labels are global in ISOLINUX: no two alike.
	seen := map[string]bool{}
	for _, l := range strings.Split(cfg, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "label" {
			if seen[f[1]] {
				t.Errorf("label %s twice:\n%s", f[1], cfg)
			}
			seen[f[1]] = true
		}
	}
}

func TestIsolinuxDefaultAfterSubmenu(t *testing.T) {
	es := []Entry{
		{Label: "sub", Submenu: []Entry{{Label: "a"}, {Label: "b"}}},
		{Label: "x", Default: true},
	}
	cfg := RenderIsolinux(ISOOptions{}, es)
	if !strings.Contains(cfg, "\ndefault live4\n") || !strings.Contains(cfg, "\nlabel live4\n\tmenu label x\n\tmenu default\n") {
		t.Errorf("the default after a submenu:\n%s", cfg)
	}
}

func TestRenderGrubInstallerAndLocales(t *testing.T) {
	o := installerOptions(t)
	cfg := RenderGrub(o, MenuEntries(o, []Kernel{{Version: "1"}}))
	for _, want := range []string{
		"\nmenuentry 'Install' {\n\tlinux /install.amd/vmlinuz vga=788 console=ttyS0,115200n8 console=tty0 --- quiet\n\tinitrd /install.amd/initrd.gz\n}\n",
		"\nmenuentry 'Graphical install' {\n\tlinux /install.amd/gtk/vmlinuz vga=788 console=ttyS0,115200n8 console=tty0 --- quiet\n\tinitrd /install.amd/gtk/initrd.gz\n}\n",
		"\nmenuentry 'Install with speech synthesis' {\n\tlinux /install.amd/gtk/vmlinuz speakup.synth=soft vga=788",
		"\nsubmenu 'Localisation support' {\n\n\tmenuentry 'German (de_DE.UTF-8)' {\n\t\tlinux /live/vmlinuz boot=live components quiet splash locales=de_DE.UTF-8 keyboard-layouts=de console=ttyS0,115200n8 console=tty0 hostname=x\n\t\tinitrd /live/initrd.img\n\t}\n",
		"\t\tinitrd /live/initrd.img\n\t}\n}\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Count(cfg, "{") != strings.Count(cfg, "}") {
		t.Errorf("unbalanced braces:\n%s", cfg)
	}
}

func TestLookupLocales(t *testing.T) {
	ls, unknown := LookupLocales([]string{"de_DE.UTF-8", "fr_FR", "xx_YY.UTF-8"})
	if len(ls) != 2 || ls[0].Keyboard != "de" || ls[1].Locale != "fr_FR.UTF-8" || !slices.Equal(unknown, []string{"xx_YY.UTF-8"}) {
		t.Errorf("LookupLocales = %+v, %q", ls, unknown)
	}
	all, unknown := LookupLocales([]string{"all"})
	if len(all) != len(Locales) || len(unknown) != 0 {
		t.Errorf("all: %d locales, unknown %q", len(all), unknown)
	}
	all[0].Name = "changed"
	if Locales[0].Name == "changed" {
		t.Error("LookupLocales hands out the table itself")
	}
	seen := map[string]bool{}
	for _, l := range Locales {
		if seen[l.Locale] || !strings.HasSuffix(l.Locale, ".UTF-8") || l.Name == "" || l.Keyboard == "" {
			t.Errorf("bad or repeated table entry %+v", l)
		}
		seen[l.Locale] = true
	}
}

// A named device tree: every live entry of a kernel loads that kernel's
// copy, after its initrd; the installer's kernel (another version) loads
// none.
func TestRenderGrubDeviceTree(t *testing.T) {
	o := ISOOptions{Arch: mustArch(t, "arm64"), DeviceTree: "rockchip/rk3399-rockpro64.dtb",
		Installer: &InstallerFiles{Dir: "/x"}, Locales: Locales[:1]}
	cfg := RenderGrub(o, MenuEntries(o, []Kernel{{Version: "6.12.40"}, {Version: "6.12.38"}}))
	for _, want := range []string{
		"\tlinux /live/vmlinuz boot=live components quiet splash console=ttyAMA0 console=tty0\n\tinitrd /live/initrd.img\n\tdevicetree /live/dtbs/rockchip/rk3399-rockpro64.dtb\n}",
		"\tinitrd /live/initrd2.img\n\tdevicetree /live/dtbs2/rockchip/rk3399-rockpro64.dtb\n}",
		"\t\tinitrd /live/initrd.img\n\t\tdevicetree /live/dtbs/rockchip/rk3399-rockpro64.dtb\n\t}", // the locale submenu
		"\tinitrd /install.a64/initrd.gz\n}",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	// live + fail-safe for two kernels, one locale entry.
	if n := strings.Count(cfg, "devicetree "); n != 5 {
		t.Errorf("%d devicetree lines, want 5:\n%s", n, cfg)
	}

	o.DeviceTree = ""
	if cfg := RenderGrub(o, MenuEntries(o, []Kernel{{Version: "1"}})); strings.Contains(cfg, "devicetree") {
		t.Errorf("no device tree named, yet:\n%s", cfg)
	}
	// An architecture without device trees never loads one.
	o = ISOOptions{Arch: mustArch(t, "amd64"), DeviceTree: "x.dtb"}
	if es := LiveEntries(o, []Kernel{{Version: "1"}}); es[0].DeviceTree != "" {
		t.Errorf("amd64 entry loads %s", es[0].DeviceTree)
	}
}
