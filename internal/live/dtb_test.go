package live

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidDeviceTree(t *testing.T) {
	for _, ok := range []string{"rockchip/rk3399-rockpro64.dtb", "imx6q-sabrelite.dtb", "ti/omap/am335x-boneblack.dtb", "sun50i-h6-orangepi-3.dtb", "a,b+c_d.dtb"} {
		if err := ValidDeviceTree(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"":                                      "empty",
		"/usr/lib/linux-image-6.12/x/board.dtb": "relative",
		"rockchip/rk3399-rockpro64":             "ends in .dtb",
		"rockchip/rk3399-rockpro64.dtbo":        "ends in .dtb",
		"../../etc/board.dtb":                   "no . or ..",
		"rockchip/./board.dtb":                  "no . or ..",
		"rockchip//board.dtb":                   "single /",
		"rockchip/board.dtb/":                   "ends in .dtb",
		"my board.dtb":                          "letters, digits",
		"board\n.dtb":                           "letters, digits",
		"$root/board.dtb":                       "letters, digits",
		"board'.dtb":                            "letters, digits",
	} {
		err := ValidDeviceTree(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", in, err, want)
		}
	}
}

// dtbTree writes device trees for kernel version into rootfs as Debian's
// kernel package lays them out, and returns them relative to DTBDir.
func dtbTree(t *testing.T, rootfs, version string, files ...string) {
	t.Helper()
	for _, f := range files {
		writeFile(t, filepath.Join(rootfs, DTBDir(version), f), []byte("dtb "+version+" "+f))
	}
}

func TestFindDTBs(t *testing.T) {
	root := t.TempDir()
	dtbTree(t, root, "6.12.38+deb13-arm64", "rockchip/rk3399-rockpro64.dtb", "allwinner/sun50i-a64-pine64.dtb",
		"allwinner/overlay/sun50i-a64-spi.dtbo", "README")
	if err := os.Symlink("rk3399-rockpro64.dtb", filepath.Join(root, DTBDir("6.12.38+deb13-arm64"), "rockchip/link.dtb")); err != nil {
		t.Fatal(err)
	}
	got, err := FindDTBs(root, "6.12.38+deb13-arm64")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"allwinner/overlay/sun50i-a64-spi.dtbo", "allwinner/sun50i-a64-pine64.dtb", "rockchip/rk3399-rockpro64.dtb"}
	if !slices.Equal(got, want) {
		t.Errorf("FindDTBs = %q, want %q", got, want)
	}
	// A kernel without device trees (amd64's, a cloud kernel) has none.
	if got, err := FindDTBs(root, "6.12.38+deb13-cloud-arm64"); err != nil || got != nil {
		t.Errorf("no directory: %q, %v", got, err)
	}
}

func TestCheckDeviceTree(t *testing.T) {
	dtbs := []string{"allwinner/sun50i-a64-pine64.dtb", "rockchip/rk3399-rockpro64.dtb"}
	if err := CheckDeviceTree("rockchip/rk3399-rockpro64.dtb", "6.12-arm64", dtbs); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		name string
		dtbs []string
		want []string
	}{
		{"rockchip/rk3399-nanopi4.dtb", dtbs, []string{"rockchip/rk3399-nanopi4.dtb", "/usr/lib/linux-image-6.12-arm64", "2 device trees"}},
		{"rk3399-rockpro64.dtb", dtbs, []string{"rk3399-rockpro64.dtb is not in /usr/lib/linux-image-6.12-arm64", "did you mean rockchip/rk3399-rockpro64.dtb?"}},
		{"rockchip/rk3399-rockpro64.dtb", nil, []string{"rockchip/rk3399-rockpro64.dtb", "no device trees", "/usr/lib/linux-image-6.12-arm64"}},
	} {
		err := CheckDeviceTree(c.name, "6.12-arm64", c.dtbs)
		if err == nil {
			t.Errorf("%s accepted among %q", c.name, c.dtbs)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}
