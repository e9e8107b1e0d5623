// Package buildervm runs a build inside a small Debian VM (isolation: vm):
// it makes and caches the builder image, boots it in qemu with the
// config, the caches and the output directory shared over 9p, runs the
// same vmdeb binary in it as root, and hands back its exit status.
package buildervm

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/arch"
	"vmdeb/internal/disk"
)

// initScript is the builder's PID 1 (installed by the builder's hook):
// it mounts the job directory and runs jobScript from it.
//
//go:embed init.sh
var initScript string

// jobScript is what a builder VM does for one build (in the job directory).
//
//go:embed job.sh
var jobScript string

// InitPath is where the builder image holds initScript.
const InitPath = "/usr/local/sbin/vmdeb-builder-init"

// Image is one builder image: a Debian release for one architecture with
// the tools any vmdeb build needs.
type Image struct {
	Suite string
	Arch  arch.Arch
}

// Packages is what the builder installs besides its kernel: every host
// tool a build may look for (build.Plan.MissingTools and the output
// packages' CheckTools name them; a test keeps the two in step), plus
// what the init script itself runs.
func Packages(a arch.Arch) []string {
	l := []string{
		// bootstrap
		"debootstrap", "debian-archive-keyring", "ca-certificates",
		// live ISO
		"squashfs-tools", "xorriso", "grub-common", "mtools", "dosfstools",
		// disk images
		"fdisk", "e2fsprogs", "btrfs-progs", "xfsprogs", "qemu-utils",
		// tarballs, reproducible passwords, the target's GRUB, the installer
		"tar", "xz-utils", "zstd", "bzip2", "openssl", "dpkg",
		// the init script: modules, network, mounts
		"kmod", "iproute2", "mount", "util-linux",
	}
	if a.GrubEFIPackage != "" {
		l = append(l, a.GrubEFIPackage)
	}
	if a.HasFirmware(arch.BIOS) {
		l = append(l, "grub-pc-bin", "isolinux", "syslinux-common", "extlinux")
	}
	sort.Strings(l)
	return l
}

// bootloader is the builder disk's boot loader on a.
func bootloader(a arch.Arch) disk.Bootloader {
	if a.HasFirmware(arch.BIOS) {
		return disk.GrubBIOS
	}
	return disk.GrubUEFI
}

// UEFI reports whether the builder for a boots with UEFI firmware.
func UEFI(a arch.Arch) bool { return !a.HasFirmware(arch.BIOS) }

// imageFile is the disk the builder config writes, in its output directory.
const imageFile = "builder.qcow2"

// Config is the builder's vmdeb config; it expects hook.sh and init.sh
// beside it (WriteConfig writes all three).
func (im Image) Config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# vmdeb's builder VM for %[1]s %[2]s (made by vmdeb itself; see docs/builder-vm.md)
name: vmdeb-builder-%[1]s-%[2]s
suite: %[1]s
architecture: %[2]s
variant: minbase
bootstrap: native
hostname: vmdeb-builder
secure-boot: false  # vmdeb boots it with plain firmware
packages:
`, im.Suite, im.Arch.Name)
	for _, p := range Packages(im.Arch) {
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	fmt.Fprintf(&b, `customise: hook.sh
outputs:
  - type: disk
    path: %s
    size: 4G
    bootloader: %s
    network: none
    kernel-params: [init=%s, quiet, loglevel=3, panic=-1]
`, imageFile, bootloader(im.Arch), InitPath)
	return b.String()
}

const hookScript = `#!/bin/sh
# Installs the builder VM's init (PID 1) into the image.
set -eu
install -D -m 0755 "$(dirname "$0")/init.sh" "$1` + InitPath + `"
`

// WriteConfig writes the builder's config, hook and init script into dir
// and returns the config's path.
func (im Image) WriteConfig(dir string) (string, error) {
	files := map[string]string{"builder.yaml": im.Config(), "hook.sh": hookScript, "init.sh": initScript}
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "builder.yaml"), nil
}

// Key identifies a builder image: its release and architecture, the
// vmdeb that made it (version and binary checksum: the guest runs the
// same binary, and its init script and package list come from it) and
// the config it was made from.
func (im Image) Key(version, binarySum string) string {
	h := sha256.New()
	fmt.Fprintf(h, "suite %s\narch %s\nvmdeb %s %s\n", im.Suite, im.Arch.Name, version, binarySum)
	h.Write([]byte(im.Config()))
	h.Write([]byte(hookScript))
	h.Write([]byte(initScript))
	return fmt.Sprintf("%s-%s-%s", im.Suite, im.Arch.Name, hex.EncodeToString(h.Sum(nil))[:16])
}

// Cache is the directory of builder images.
type Cache struct{ Dir string }

// DefaultCacheDir is root's builder cache; other users get
// ~/.cache/vmdeb/builders.
const DefaultCacheDir = "/var/cache/vmdeb/builders"

// Entry describes a cached builder image (KEY.json beside KEY.qcow2).
type Entry struct {
	Key      string    `json:"key"`
	Suite    string    `json:"suite"`
	Arch     string    `json:"architecture"`
	Version  string    `json:"vmdeb"`
	Created  time.Time `json:"created"`
	Took     string    `json:"took"`
	Image    string    `json:"-"`
	Size     int64     `json:"-"`
	LastUsed time.Time `json:"-"`
}

// Path is the image file of key.
func (c Cache) Path(key string) string { return filepath.Join(c.Dir, key+".qcow2") }

// Maker builds the builder config cfg into outDir (vmdeb build, run by
// the caller as root or rootless).
type Maker func(ctx context.Context, cfg, outDir string) error

// Ensure returns the image of key, making it with make when the cache has
// none. Concurrent callers wait for one another; the image appears under
// its final name only when complete, so a killed build leaves nothing a
// later one would use.
func (c Cache) Ensure(ctx context.Context, im Image, key, version string, mk Maker, log func(string, ...any)) (string, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		log("vmdeb: waiting for another vmdeb that is making a builder image in %s", c.Dir)
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			return "", err
		}
	}
	final := c.Path(key)
	if _, err := os.Stat(final); err == nil {
		now := time.Now()
		os.Chtimes(filepath.Join(c.Dir, key+".json"), now, now) // last used
		return final, nil
	}
	// Leftovers of killed builds (we hold the lock: nobody is using them).
	old, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp-*"))
	for _, o := range old {
		os.RemoveAll(o)
	}
	tmp, err := os.MkdirTemp(c.Dir, ".tmp-"+key+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cfgDir, outDir := filepath.Join(tmp, "config"), filepath.Join(tmp, "out")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return "", err
	}
	cfg, err := im.WriteConfig(cfgDir)
	if err != nil {
		return "", err
	}
	log("vmdeb: making the builder image %s (once; cached in %s)", key, c.Dir)
	start := time.Now()
	if err := mk(ctx, cfg, outDir); err != nil {
		return "", fmt.Errorf("making the builder image %s: %w", key, err)
	}
	e := Entry{Key: key, Suite: im.Suite, Arch: im.Arch.Name, Version: version, Created: time.Now().UTC(), Took: time.Since(start).Round(time.Second).String()}
	meta, _ := json.MarshalIndent(e, "", "  ")
	if err := os.WriteFile(filepath.Join(c.Dir, key+".json"), append(meta, '\n'), 0o644); err != nil {
		return "", err
	}
	// The image last: its name is the mark of a complete entry.
	if err := os.Rename(filepath.Join(outDir, imageFile), final); err != nil {
		return "", fmt.Errorf("the builder build left no %s: %w", imageFile, err)
	}
	// Older builders of this release and architecture (another vmdeb
	// made them) go: a VM still running one keeps its open file.
	if l, err := c.List(); err == nil {
		for _, e := range l {
			if e.Key != key && e.Suite == im.Suite && e.Arch == im.Arch.Name {
				if err := c.Remove(e.Key); err == nil {
					log("vmdeb: removed the older builder image %s", e.Key)
				}
			}
		}
	}
	log("vmdeb: builder image %s made in %s", key, time.Since(start).Round(time.Second))
	return final, nil
}

// List returns the complete entries, most recently used first.
func (c Cache) List() ([]Entry, error) {
	imgs, err := filepath.Glob(filepath.Join(c.Dir, "*.qcow2"))
	if err != nil {
		return nil, err
	}
	var l []Entry
	for _, img := range imgs {
		key := strings.TrimSuffix(filepath.Base(img), ".qcow2")
		e := Entry{Key: key, Image: img}
		meta := filepath.Join(c.Dir, key+".json")
		if data, err := os.ReadFile(meta); err == nil {
			json.Unmarshal(data, &e)
		}
		if fi, err := os.Stat(meta); err == nil {
			e.LastUsed = fi.ModTime()
		}
		var st unix.Stat_t
		if unix.Stat(img, &st) == nil {
			e.Size = st.Blocks * 512
		}
		l = append(l, e)
	}
	sort.Slice(l, func(i, j int) bool { return l[i].LastUsed.After(l[j].LastUsed) })
	return l, nil
}

// Remove deletes an entry.
func (c Cache) Remove(key string) error {
	return errors.Join(os.Remove(c.Path(key)), ignoreMissing(os.Remove(filepath.Join(c.Dir, key+".json"))))
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
