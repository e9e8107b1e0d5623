package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/arch"
	"vmdeb/internal/buildervm"
	"vmdeb/internal/config"
)

// tree makes a root file system: name => "" for a directory, "->TARGET"
// for a symbolic link, "x" for an executable, "f" for a plain file.
func tree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(root, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		var err error
		switch v := entries[n]; {
		case v == "":
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(v[2:], p)
		case v == "x":
			err = os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
		default:
			err = os.WriteFile(p, nil, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckInit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tree    map[string]string
		wantErr string
	}{
		// trixie with systemd-sysv: merged /usr, an absolute link that
		// must resolve inside the image, not on the host.
		{"systemd", map[string]string{"usr/lib/systemd/systemd": "x", "usr/sbin/init": "->/lib/systemd/systemd",
			"sbin": "->usr/sbin", "lib": "->usr/lib"}, ""},
		{"sysvinit", map[string]string{"usr/sbin/init": "x", "sbin": "->usr/sbin"}, ""},
		{"minbase", map[string]string{"usr/sbin/agetty": "x", "sbin": "->usr/sbin"}, "it has no /sbin/init; add an init system to packages: systemd-sysv"},
		{"dangling", map[string]string{"usr/sbin/init": "->/lib/systemd/systemd", "sbin": "->usr/sbin"}, "no /sbin/init"},
		// The host has /bin/sh; the image does not.
		{"escape", map[string]string{"sbin/init": "->../../../../../../bin/sh"}, "no /sbin/init"},
		{"not executable", map[string]string{"sbin/init": "f"}, "not an executable file"},
		{"loop", map[string]string{"sbin/init": "->init2", "sbin/init2": "->init"}, "too many levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckInit(tree(t, tc.tree), "/sbin/init")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}

// An init= on the kernel command line (the builder VM's own PID 1) is
// what must exist; /sbin/init is then not needed.
func TestCheckInitNamed(t *testing.T) {
	root := tree(t, map[string]string{"usr/local/sbin/builder-init": "x", "usr/sbin/agetty": "x"})
	if err := CheckInit(root, "/usr/local/sbin/builder-init"); err != nil {
		t.Fatal(err)
	}
	err := CheckInit(root, "/usr/local/sbin/other-init")
	if err == nil || !strings.Contains(err.Error(), "no /usr/local/sbin/other-init, which kernel-params names as init=") {
		t.Fatalf("got %v", err)
	}
}

func TestInitPaths(t *testing.T) {
	for _, tc := range []struct {
		name    string
		live    []string
		outputs []config.Output
		want    []string
	}{
		{"live default", nil, nil, []string{"/sbin/init"}},
		{"live init=", []string{"quiet", "init=/bin/a", "init=/usr/local/sbin/b"}, nil, []string{"/usr/local/sbin/b"}},
		{"disk init=", []string{"init=/bin/a"}, []config.Output{{Type: "disk", KernelParams: []string{"init=/bin/d"}}}, []string{"/bin/d"}},
		{"live and disk", []string{"init=/bin/a"}, []config.Output{{Type: "live-iso"}, {Type: "disk"}}, []string{"/bin/a", "/sbin/init"}},
		{"tarball", nil, []config.Output{{Type: "tarball"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, "")
			s.Live.KernelParams = tc.live
			if tc.outputs != nil {
				s.Outputs = tc.outputs
			}
			if got := InitPaths(s); !slices.Equal(got, tc.want) {
				t.Errorf("InitPaths = %v, want %v", got, tc.want)
			}
		})
	}
}

func stageNames(p *Plan) []string {
	var n []string
	for _, s := range Stages(p) {
		n = append(n, s.Name())
	}
	return n
}

// The check runs right after the packages, or after the hook (which may
// install the init), and always before the outputs; a tarball or
// directory may be a container's root and is not checked. Outputs that
// boot on UEFI fetch the signed loaders (secure-boot auto) unless it is
// off or the disk boots with BIOS only.
func TestInitStage(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		outputs     []config.Output
		want        []string
	}{
		{"disk", "", []config.Output{{Type: "disk", Path: "vm.img"}},
			[]string{"bootstrap", "packages", "init", "system", "finalise", "disk", "report"}},
		{"live with hook", "customise: " + os.Args[0] + "\n", nil,
			[]string{"bootstrap", "packages", "secure-boot", "system", "customise", "init", "finalise", "live-iso", "report"}},
		{"live without Secure Boot", "secure-boot: false\n", nil,
			[]string{"bootstrap", "packages", "init", "system", "finalise", "live-iso", "report"}},
		{"BIOS disk", "", []config.Output{{Type: "disk", Path: "vm.img", Bootloader: "grub-bios"}},
			[]string{"bootstrap", "packages", "init", "system", "finalise", "disk", "report"}},
		{"squashfs", "", []config.Output{{Type: "squashfs", Path: "sq"}},
			[]string{"bootstrap", "packages", "init", "system", "finalise", "squashfs", "report"}},
		{"tarball", "", []config.Output{{Type: "tarball", Path: "t.tar"}},
			[]string{"bootstrap", "packages", "system", "finalise", "tarball", "report"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, tc.extra)
			if tc.outputs != nil {
				s.Outputs = tc.outputs
			}
			if got := stageNames(&Plan{Spec: s}); !slices.Equal(got, tc.want) {
				t.Errorf("stages %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInitNote(t *testing.T) {
	disk := []config.Output{{Type: "disk", Path: "vm.img"}}
	for _, tc := range []struct {
		name    string
		variant config.Variant
		outputs []config.Output
		pkgs    []string
		want    bool
	}{
		{"minbase disk", "minbase", disk, []string{"linux-image-amd64"}, true},
		{"buildd disk", "buildd", disk, []string{"linux-image-amd64"}, true},
		{"minbase disk with systemd-sysv", "minbase", disk, []string{"linux-image-amd64", "systemd-sysv"}, false},
		{"minbase disk with pinned sysvinit-core", "minbase", disk, []string{"sysvinit-core/trixie"}, false},
		{"important disk", "important", disk, []string{"linux-image-amd64"}, false},
		{"minbase tarball", "minbase", []config.Output{{Type: "tarball", Path: "t.tar"}}, nil, false},
		{"minbase disk with its own init=", "minbase", []config.Output{{Type: "disk", Path: "vm.img", KernelParams: []string{"init=/usr/local/sbin/x"}}}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, "")
			s.Variant, s.Outputs = tc.variant, tc.outputs
			n := initNote(s, tc.pkgs)
			if (n != "") != tc.want || (n != "" && !strings.Contains(n, "add systemd-sysv to packages")) {
				t.Errorf("note %q, want one: %v", n, tc.want)
			}
		})
	}
}

// The builder VM's image is minbase with no init package: its PID 1 is
// vmdeb's own script, named by init= on its disk's command line. The init
// check must look for that, not /sbin/init (it once refused every
// builder image).
func TestBuilderImageInit(t *testing.T) {
	a, err := arch.Lookup("amd64")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := buildervm.Image{Suite: "trixie", Arch: a}.WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := InitPaths(s); !slices.Equal(got, []string{buildervm.InitPath}) {
		t.Errorf("InitPaths = %v, want [%s]", got, buildervm.InitPath)
	}
	if n := initNote(s, packageList(s)); n != "" {
		t.Errorf("check would warn on the builder's config: %s", n)
	}
}
