package live

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"vmdeb/internal/imgroot"
)

// DTBDir is where Debian's kernel package for release version installs
// its device trees, relative to the root file system: vendor directories
// of .dtb (and .dtbo overlay) files, e.g. rockchip/rk3399-rockpro64.dtb.
func DTBDir(version string) string { return "usr/lib/linux-image-" + version }

// dtbNameRE is what a device tree name may contain: the kernel's own file
// names use far less, and nothing here needs quoting in a boot loader's
// config.
var dtbNameRE = regexp.MustCompile(`^[A-Za-z0-9._,+-]+(/[A-Za-z0-9._,+-]+)*\.dtb$`)

// ValidDeviceTree checks a device tree name as a config gives it: a path
// relative to the kernel's device tree directory, ending in .dtb.
func ValidDeviceTree(name string) error {
	if name == "" {
		return errors.New("empty device tree name")
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("%q: give the path relative to the kernel's device tree directory (/%s), e.g. rockchip/rk3399-rockpro64.dtb", name, DTBDir("VERSION"))
	}
	if !strings.HasSuffix(name, ".dtb") {
		return fmt.Errorf("%q: a device tree file ends in .dtb, e.g. rockchip/rk3399-rockpro64.dtb", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "." || part == ".." {
			return fmt.Errorf("%q: no . or .. in the path; name the file below the kernel's device tree directory", name)
		}
	}
	if !dtbNameRE.MatchString(name) || path.Clean(name) != name {
		return fmt.Errorf("%q: letters, digits, . _ , + - and single / only, e.g. rockchip/rk3399-rockpro64.dtb", name)
	}
	return nil
}

// FindDTBs lists the device tree files (.dtb, .dtbo) of kernel version in
// rootfs, relative to its DTBDir, sorted. A kernel without device trees
// (no DTBDir, as on amd64) has none, which is not an error.
func FindDTBs(rootfs, version string) ([]string, error) {
	r, err := imgroot.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dir, err := r.Resolve(DTBDir(version))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device trees of kernel %s: %w", version, err)
	}
	var files []string
	err = r.Walk(dir, func(p string, e imgroot.Entry) error {
		if !e.Info().Mode().IsRegular() || !(strings.HasSuffix(p, ".dtb") || strings.HasSuffix(p, ".dtbo")) {
			return nil
		}
		files = append(files, strings.TrimPrefix(p, dir+"/"))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device trees of kernel %s: %w", version, err)
	}
	sort.Strings(files)
	return files, nil
}

// dtbDirIn is the host path of kernel version's device tree directory in
// rootfs with every link in it resolved inside the image, so that the
// files FindDTBs found are read from the image, never from the host.
func dtbDirIn(rootfs, version string) (string, error) {
	r, err := imgroot.Open(rootfs)
	if err != nil {
		return "", err
	}
	defer r.Close()
	rel, err := r.Resolve(DTBDir(version))
	if err != nil {
		return "", err
	}
	return filepath.Join(rootfs, rel), nil
}

// CheckDeviceTree returns an error naming the device tree and where it
// was looked for when name is not among dtbs, the device trees FindDTBs
// found for kernel version; files of the same base name in another
// directory are suggested.
func CheckDeviceTree(name, version string, dtbs []string) error {
	var similar []string
	for _, d := range dtbs {
		if d == name {
			return nil
		}
		if path.Base(d) == path.Base(name) {
			similar = append(similar, d)
		}
	}
	where := "/" + DTBDir(version)
	switch {
	case len(dtbs) == 0:
		return fmt.Errorf("device tree %s: kernel %s has no device trees (nothing in %s of the image); does its kernel package ship them?", name, version, where)
	case len(similar) > 0:
		return fmt.Errorf("device tree %s is not in %s of the image (kernel %s); did you mean %s?", name, where, version, strings.Join(similar, " or "))
	}
	return fmt.Errorf("device tree %s is not in %s of the image (kernel %s, %d device trees there)", name, where, version, len(dtbs))
}
