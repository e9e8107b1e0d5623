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
