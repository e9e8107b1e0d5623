package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/imgroot"
)

// One initramfs per kernel. Installing a kernel makes its initramfs at
// once (its postinst hook runs `update-initramfs -c`), and every package
// that adds to the initramfs later in the same apt run (live-boot,
// cryptsetup, plymouth...) asks for it to be made again (`update-
// initramfs -u`, run by initramfs-tools' trigger). Each costs seconds to
// minutes, more under qemu-user. While the packages stage installs,
// update-initramfs is therefore a stand-in, first on the PATH apt gives
// dpkg and its maintainer scripts (DPkg::Path), that only writes down
// what was asked;
// once every package is configured, each kernel asked for gets its
// initramfs made once, by the image's own update-initramfs, with every
// hook in place. The stand-in lives on the chroot's /run (a tmpfs): the
// image never has it, and nothing of dpkg's (no diversion) is changed. A
// wrapper that a package puts in update-initramfs's place (live-tools'
// diversion) still runs, at the end.
// Deleting an initramfs (-d, a kernel's removal) is not put off.

const (
	initramfsDir      = "/run/vmdeb/initramfs" // in the chroot
	initramfsRequests = initramfsDir + "/requests"
	updateInitramfs   = "/usr/sbin/update-initramfs"
)

// initramfsStandIn is the stand-in's script. It writes down a create or
// an update (-c, -u); anything else (a deletion, --version, help) goes to
// the real update-initramfs at once, or does nothing while initramfs-tools
// is not unpacked yet (a script that looked for update-initramfs on the
// PATH found the stand-in, where it would have found nothing).
const initramfsStandIn = `#!/bin/sh
# vmdeb: the initramfs is made once every package is installed.
put_off=
for a do
	case $a in
	--* | -*[dh?]*) put_off= ; break ;;
	-*[cu]*) put_off=1 ;;
	esac
done
if [ -z "$put_off" ]; then
	[ -x ` + updateInitramfs + ` ] || exit 0
	exec ` + updateInitramfs + ` "$@"
fi
printf '%s\n' "$*" >> ` + initramfsRequests + `
echo "update-initramfs: put off by vmdeb until every package is installed"
`

// hookAptConf is the apt configuration that puts the stand-in first on
// dpkg's PATH for the apt runs of the config's hook (chroot ROOTFS apt-get
// ...), whose command lines vmdeb does not write. It is there only while
// the hook runs.
const hookAptConf = "etc/apt/apt.conf.d/00vmdeb-build-initramfs"

// putOffHookInitramfs puts the initramfs off while the hook runs: the
// function it returns removes the apt configuration (call it once the
// hook ends, then makeInitramfs).
func putOffHookInitramfs(st *State) (func() error, error) {
	if _, err := putOffInitramfs(st); err != nil {
		return nil, err
	}
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	conf := "// vmdeb: for the build only (removed once the hook ends)\nDPkg::Path \"" + initramfsDir + ":" + dpkgPath + "\";\n"
	if err := r.MkdirAll(path.Dir(hookAptConf), 0o755); err != nil {
		return nil, err
	}
	if err := r.WriteFile(hookAptConf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return func() error {
		r, err := imgroot.Open(st.Rootfs)
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.Remove(hookAptConf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}, nil
}

// dpkgPath is apt's default DPkg::Path, the PATH apt gives dpkg and so
// every maintainer script.
const dpkgPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// putOffInitramfs installs the stand-in and returns the apt options that
// put it first on the PATH of dpkg and its maintainer scripts.
func putOffInitramfs(st *State) ([]string, error) {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := r.MkdirAll(strings.TrimPrefix(initramfsDir, "/"), 0o755); err != nil {
		return nil, err
	}
	if err := r.WriteFile(strings.TrimPrefix(initramfsDir, "/")+"/update-initramfs", []byte(initramfsStandIn), 0o755); err != nil {
		return nil, err
	}
	return []string{"-o", "DPkg::Path=" + initramfsDir + ":" + dpkgPath}, nil
}

// putOffKept is where the common-packages stage leaves the requests it
// put off, in the root file system its cache entry keeps (the stand-in's
// directory is on the chroot's /run, which no entry keeps); the packages
// stage takes them back and makes the initramfs once for both.
const putOffKept = "var/lib/vmdeb/initramfs-put-off"

// keepPutOffInitramfs moves the requests put off so far to putOffKept.
func keepPutOffInitramfs(st *State) error {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	data, err := r.ReadFile(strings.TrimPrefix(initramfsRequests, "/"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.MkdirAll(path.Dir(putOffKept), 0o755); err != nil {
		return err
	}
	if err := r.WriteFile(putOffKept, data, 0o644); err != nil {
		return err
	}
	return r.Remove(strings.TrimPrefix(initramfsRequests, "/"))
}

// takePutOffInitramfs moves the requests keepPutOffInitramfs kept back
// to the stand-in's (installed by putOffInitramfs), before what it puts
// off itself; the image keeps no trace of them.
func takePutOffInitramfs(st *State) error {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	data, err := r.ReadFile(putOffKept)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	reqs := strings.TrimPrefix(initramfsRequests, "/")
	old, err := r.ReadFile(reqs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := r.WriteFile(reqs, append(data, old...), 0o644); err != nil {
		return err
	}
	if err := r.Remove(putOffKept); err != nil {
		return err
	}
	// Only if empty: the image may have a directory of that name.
	r.Remove(path.Dir(putOffKept))
	return nil
}

// initramfsRequest is one call of update-initramfs that was put off.
type initramfsRequest struct {
	Mode    byte   // 'c' (create) or 'u' (update)
	Version string // "" (the newest), "all", or a kernel version
	BootDir string // -b's directory, "" for /boot
}

// parseInitramfsRequest reads update-initramfs's arguments as its getopts
// does ("k:cudvtb:h?"): letters may be grouped, -k and -b take the rest
// of their word or the next word.
func parseInitramfsRequest(args []string) (initramfsRequest, error) {
	var q initramfsRequest
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			return q, fmt.Errorf("update-initramfs %s: unexpected argument %q", strings.Join(args, " "), a)
		}
		for j := 1; j < len(a); j++ {
			switch c := a[j]; c {
			case 'c', 'u':
				q.Mode = c
			case 'v', 't':
			case 'k', 'b':
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return q, fmt.Errorf("update-initramfs %s: -%c needs a value", strings.Join(args, " "), c)
					}
					i++
					v = args[i]
				}
				if c == 'k' {
					q.Version = v
				} else {
					q.BootDir = v
				}
				j = len(a)
			default:
				return q, fmt.Errorf("update-initramfs %s: unexpected option -%c", strings.Join(args, " "), c)
			}
		}
	}
	if q.Mode == 0 {
		return q, fmt.Errorf("update-initramfs %s: neither -c nor -u", strings.Join(args, " "))
	}
	return q, nil
}

// initramfsTarget is one kernel whose initramfs is to be made.
type initramfsTarget struct {
	Version, BootDir string
	Exists           bool // its initramfs is on disk (update, not create)
}

// initramfsTargets turns the requests into the kernels to make an
// initramfs for, each once, in version order. have lists the kernel
// versions with an initramfs in /boot now; kernels lists the installed
// ones (for -k all with -c). An update without a version updates every
// initramfs there is or was asked to be created: a superset of what
// update-initramfs -u would have done at each call, made once.
func initramfsTargets(reqs []initramfsRequest, have, kernels []string) []initramfsTarget {
	boot := map[string]string{}
	add := func(v, dir string) {
		if d, ok := boot[v]; !ok || d == "" {
			boot[v] = dir
		}
	}
	anyUpdate := false
	for _, q := range reqs {
		switch {
		case q.Version == "all" && q.Mode == 'c':
			for _, k := range kernels {
				add(k, q.BootDir)
			}
		case q.Version == "all" || q.Version == "":
			if q.Mode == 'u' {
				anyUpdate = true
			}
		default:
			add(q.Version, q.BootDir)
		}
	}
	if anyUpdate {
		for _, v := range have {
			add(v, "")
		}
	}
	var out []initramfsTarget
	for v, d := range boot {
		out = append(out, initramfsTarget{Version: v, BootDir: d, Exists: slices.Contains(have, v)})
	}
	slices.SortFunc(out, func(a, b initramfsTarget) int { return strings.Compare(a.Version, b.Version) })
	return out
}

// makeInitramfs makes the initramfs of each kernel asked for while the
// stand-in was in place, once, and removes the stand-in.
func makeInitramfs(ctx context.Context, st *State) error {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	data, err := r.ReadFile(strings.TrimPrefix(initramfsRequests, "/"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := r.RemoveAll(strings.TrimPrefix(initramfsDir, "/")); err != nil {
		return err
	}
	var reqs []initramfsRequest
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		q, err := parseInitramfsRequest(strings.Fields(line))
		if err != nil {
			return err
		}
		reqs = append(reqs, q)
	}
	if len(reqs) == 0 {
		return nil
	}
	if _, err := r.Stat(strings.TrimPrefix(updateInitramfs, "/")); err != nil {
		st.Log.Printf("initramfs: asked for %d times, but the image has no %s: none made", len(reqs), updateInitramfs)
		return nil
	}
	have := versionsOf(r, "boot/initrd.img-")
	kernels := append(versionsOf(r, "boot/vmlinuz-"), versionsOf(r, "boot/vmlinux-")...)
	targets := initramfsTargets(reqs, have, kernels)
	var names []string
	for _, t := range targets {
		names = append(names, t.Version)
	}
	st.Log.Printf("initramfs: asked for %d times while installing; made once for %s", len(reqs), strings.Join(names, " "))
	for _, t := range targets {
		args := []string{"-c", "-k", t.Version}
		if t.Exists {
			args[0] = "-u"
		}
		if t.BootDir != "" {
			args = append(args, "-b", t.BootDir)
		}
		if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: updateInitramfs, Args: args}); err != nil {
			return err
		}
	}
	return nil
}

// versionsOf lists the versions of the files named prefix+VERSION.
func versionsOf(r *imgroot.Root, prefix string) []string {
	m, _ := r.Glob(prefix + "*")
	var v []string
	for _, p := range m {
		name := strings.TrimPrefix(path.Base(p), path.Base(prefix))
		if name != "" && !strings.HasSuffix(name, ".bak") && !strings.HasSuffix(name, ".new") && !strings.HasSuffix(name, ".dpkg-tmp") {
			v = append(v, name)
		}
	}
	slices.Sort(v)
	return v
}
