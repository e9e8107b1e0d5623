package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/live"
)

// The named device tree: each kernel's copy, loaded after its initrd,
// from the root file system, which a separate /boot makes a search of
// its own.
func TestRenderGrubCfgDeviceTree(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "arm64"), DeviceTree: "rockchip/rk3399-rockpro64.dtb"}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	cfg := RenderGrubCfg(l, o, []string{"6.12.38+deb13-arm64", "6.1.0-9-arm64"})
	for _, want := range []string{
		"\tinitrd /boot/initrd.img-6.12.38+deb13-arm64\n\tdevicetree /usr/lib/linux-image-6.12.38+deb13-arm64/rockchip/rk3399-rockpro64.dtb\n}\n",
		"\tinitrd /boot/initrd.img-6.1.0-9-arm64\n\tdevicetree /usr/lib/linux-image-6.1.0-9-arm64/rockchip/rk3399-rockpro64.dtb\n}\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "dtbroot") {
		t.Errorf("one file system, yet a search for the device trees':\n%s", cfg)
	}

	o.BootSize = 256 * mib
	l, err = Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := l.Part("root")
	cfg = RenderGrubCfg(l, o, []string{"6.12.38+deb13-arm64"})
	for _, want := range []string{
		"search --no-floppy --fs-uuid --set=dtbroot " + root.UUID + "\n",
		"\tinitrd /initrd.img-6.12.38+deb13-arm64\n\tdevicetree ($dtbroot)/usr/lib/linux-image-6.12.38+deb13-arm64/rockchip/rk3399-rockpro64.dtb\n}\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg with a separate /boot lacks %q:\n%s", want, cfg)
		}
	}

	o.DeviceTree = ""
	if cfg := RenderGrubCfg(l, o, []string{"1"}); strings.Contains(cfg, "devicetree") || strings.Contains(cfg, "dtbroot") {
		t.Errorf("none named, yet:\n%s", cfg)
	}
}

func TestCheckDeviceTree(t *testing.T) {
	rootfs := t.TempDir()
	for _, v := range []string{"6.12-arm64", "6.1-arm64"} {
		p := filepath.Join(rootfs, live.DTBDir(v), "rockchip/rk3399-rockpro64.dtb")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("dtb"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	arm64 := Options{Arch: archOf(t, "arm64"), Bootloader: "grub-uefi", DeviceTree: "rockchip/rk3399-rockpro64.dtb"}
	if err := checkDeviceTree(arm64, rootfs, []string{"6.12-arm64", "6.1-arm64"}); err != nil {
		t.Error(err)
	}
	if err := checkDeviceTree(Options{Arch: archOf(t, "amd64")}, rootfs, []string{"6.12-amd64"}); err != nil {
		t.Errorf("none named: %v", err)
	}
	missing := arm64
	missing.DeviceTree = "rockchip/rk3399-nanopi4.dtb"
	noGrub := arm64
	noGrub.Bootloader = "none"
	amd64 := Options{Arch: archOf(t, "amd64"), Bootloader: "grub-bios", DeviceTree: "x/board.dtb"}
	for _, c := range []struct {
		o       Options
		kernels []string
		want    []string
	}{
		{missing, []string{"6.12-arm64"}, []string{"rockchip/rk3399-nanopi4.dtb", "/usr/lib/linux-image-6.12-arm64"}},
		{arm64, []string{"6.12-arm64", "6.2-arm64"}, []string{"rockchip/rk3399-rockpro64.dtb", "kernel 6.2-arm64 has no device trees", "/usr/lib/linux-image-6.2-arm64"}},
		{noGrub, []string{"6.12-arm64"}, []string{"only GRUB loads one", "none"}},
		{amd64, []string{"6.12-amd64"}, []string{"amd64 does not use device trees"}},
	} {
		err := checkDeviceTree(c.o, rootfs, c.kernels)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s with kernels %q: %v, want %q", c.o.DeviceTree, c.kernels, err, w)
			}
		}
	}
}
