package live

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"vmdeb/internal/imgroot"
)

// Kernel is one installed kernel of the root file system.
type Kernel struct {
	Version string // e.g. 6.12.38+deb13-amd64
	Vmlinuz string // host path inside the rootfs, e.g. /work/rootfs/boot/vmlinuz-6.12.38+deb13-amd64
	Initrd  string // host path of its initramfs
}

// FindKernels lists the kernels in rootfs/boot that have an initramfs,
// newest first by Debian version order. A live system cannot boot a kernel
// without one (live-boot lives in the initramfs), so those are left out.
func FindKernels(rootfs string) ([]Kernel, error) {
	root, err := filepath.Abs(rootfs)
	if err != nil {
		return nil, err
	}
	r, err := imgroot.Open(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	boot := filepath.Join(root, "boot")
	ents, err := r.ReadDir("boot")
	if err != nil {
		return nil, fmt.Errorf("looking for kernels: %w", err)
	}
	var ks []Kernel
	var noInitrd []string
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || v == "" {
			continue
		}
		vmlinuz, err := resolveInRoot(r, "boot/"+e.Name())
		if err != nil {
			continue // a dangling link or a directory is not a kernel
		}
		initrd, err := resolveInRoot(r, "boot/initrd.img-"+v)
		if err != nil {
			noInitrd = append(noInitrd, v)
			continue
		}
		ks = append(ks, Kernel{Version: v, Vmlinuz: vmlinuz, Initrd: initrd})
	}
	if len(ks) == 0 {
		if len(noInitrd) > 0 {
			return nil, fmt.Errorf("no kernel with an initramfs in %s: %s lack initrd.img-VERSION (is initramfs-tools installed?)", boot, strings.Join(noInitrd, ", "))
		}
		return nil, fmt.Errorf("no kernel in %s (no vmlinuz-VERSION): install the architecture's linux-image package", boot)
	}
	sort.SliceStable(ks, func(i, j int) bool { return compareKernel(ks[i].Version, ks[j].Version) > 0 })
	return ks, nil
}

// compareKernel orders kernel release strings like dpkg orders versions,
// falling back to plain string order for what dpkg cannot parse.
func compareKernel(a, b string) int {
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	if errA == nil && errB == nil {
		return version.Compare(va, vb)
	}
	return strings.Compare(a, b)
}

// resolveInRoot returns the host path of name, following symbolic links
// as the live system would see them (an absolute target is inside the
// image, not on the host), with no link left in it. It must be a regular
// file.
func resolveInRoot(r *imgroot.Root, name string) (string, error) {
	rel, err := r.Resolve(name)
	if err != nil {
		return "", err
	}
	fi, err := r.Lstat(rel)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", filepath.Join(r.Path(), name))
	}
	return filepath.Join(r.Path(), rel), nil
}
