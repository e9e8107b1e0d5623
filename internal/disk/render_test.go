package disk

import (
	"strings"
	"testing"
)

func TestRenderFstab(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "amd64"), BootSize: 256 * mib, SwapSize: 128 * mib}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	esp, _, _ := l.Part("esp")
	boot, _, _ := l.Part("boot")
	swap, _, _ := l.Part("swap")
	root, _, _ := l.Part("root")
	got := RenderFstab(l)
	want := []string{
		"UUID=" + root.UUID + "\t/\text4\terrors=remount-ro\t0\t1",
		"UUID=" + boot.UUID + "\t/boot\text4\tdefaults\t0\t2",
		"UUID=" + esp.UUID + "\t/boot/efi\tvfat\tumask=0077\t0\t1",
		"UUID=" + swap.UUID + "\tnone\tswap\tsw\t0\t0",
	}
	var entries []string
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.HasPrefix(line, "#") {
			entries = append(entries, line)
		}
	}
	if strings.Join(entries, "\n") != strings.Join(want, "\n") {
		t.Errorf("fstab:\n%s\nwant entries:\n%s", got, strings.Join(want, "\n"))
	}
	if strings.Contains(got, "/dev/") {
		t.Errorf("fstab names a device instead of a UUID:\n%s", got)
	}
}

func TestRenderGrubCfg(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "amd64"), KernelParams: []string{"quiet", "x=a b"}}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := l.Part("root")
	cfg := RenderGrubCfg(l, o, []string{"6.12.38+deb13-amd64", "6.1.0-9-amd64"})
	for _, want := range []string{
		"search --no-floppy --fs-uuid --set=root " + root.UUID + "\n",
		"serial --unit=0 --speed=115200\n",
		"terminal_output console serial\n",
		"set default=0\n",
		"menuentry 'Debian GNU/Linux, with Linux 6.12.38+deb13-amd64' --id vmdeb-0 {\n" +
			"\tlinux /boot/vmlinuz-6.12.38+deb13-amd64 root=UUID=" + root.UUID + " ro console=tty0 console=ttyS0,115200n8 quiet 'x=a b'\n" +
			"\tinitrd /boot/initrd.img-6.12.38+deb13-amd64\n}\n",
		"\tlinux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Index(cfg, "6.12.38") > strings.Index(cfg, "6.1.0-9") {
		t.Error("the newest kernel is not the first entry")
	}
	if e := earlyGrubCfg(l); e != "search.fs_uuid "+root.UUID+" root\nset prefix=($root)/boot/grub\n" {
		t.Errorf("early config:\n%s", e)
	}
}

func TestRenderGrubCfgSeparateBoot(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "arm64"), BootSize: 300 * mib}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	boot, _, _ := l.Part("boot")
	root, _, _ := l.Part("root")
	cfg := RenderGrubCfg(l, o, []string{"6.12.38+deb13-arm64"})
	for _, want := range []string{
		"--set=root " + boot.UUID + "\n",
		"\tlinux /vmlinuz-6.12.38+deb13-arm64 root=UUID=" + root.UUID + " ro console=tty0 console=ttyAMA0\n",
		"\tinitrd /initrd.img-6.12.38+deb13-arm64\n",
		"terminal_output console\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "serial --unit") {
		t.Errorf("a PC serial port on arm64:\n%s", cfg)
	}
	if e := earlyGrubCfg(l); !strings.Contains(e, boot.UUID+" root\n") || !strings.Contains(e, "set prefix=($root)/grub\n") {
		t.Errorf("early config:\n%s", e)
	}
}

func TestGrubWord(t *testing.T) {
	for in, want := range map[string]string{
		"quiet":                "quiet",
		"console=ttyS0,9600n8": "console=ttyS0,9600n8",
		"a b":                  "'a b'",
		"$x":                   "'$x'",
		"it's":                 `'it'\''s'`,
		"":                     "''",
	} {
		if got := grubWord(in); got != want {
			t.Errorf("grubWord(%q) = %s, want %s", in, got, want)
		}
	}
	if got := oneLine("a\nmenuentry x"); strings.Contains(got, "\n") {
		t.Errorf("oneLine kept a newline: %q", got)
	}
}
