package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
			err := CheckInit(tree(t, tc.tree))
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

func stageNames(p *Plan) []string {
	var n []string
	for _, s := range Stages(p) {
		n = append(n, s.Name())
	}
	return n
}

// The check runs right after the packages, or after the hook (which may
// install the init), and always before the outputs; a tarball or
// directory may be a container's root and is not checked.
func TestInitStage(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		outputs     []config.Output
		want        []string
	}{
		{"disk", "", []config.Output{{Type: "disk", Path: "vm.img"}},
			[]string{"bootstrap", "chroot", "packages", "init", "system", "finalise", "disk", "report"}},
		{"live with hook", "customise: " + os.Args[0] + "\n", nil,
			[]string{"bootstrap", "chroot", "packages", "system", "customise", "init", "finalise", "live-iso", "report"}},
		{"squashfs", "", []config.Output{{Type: "squashfs", Path: "sq"}},
			[]string{"bootstrap", "chroot", "packages", "init", "system", "finalise", "squashfs", "report"}},
		{"tarball", "", []config.Output{{Type: "tarball", Path: "t.tar"}},
			[]string{"bootstrap", "chroot", "packages", "system", "finalise", "tarball", "report"}},
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
		name, variant string
		outputs       []config.Output
		pkgs          []string
		want          bool
	}{
		{"minbase disk", "minbase", disk, []string{"linux-image-amd64"}, true},
		{"buildd disk", "buildd", disk, []string{"linux-image-amd64"}, true},
		{"minbase disk with systemd-sysv", "minbase", disk, []string{"linux-image-amd64", "systemd-sysv"}, false},
		{"minbase disk with pinned sysvinit-core", "minbase", disk, []string{"sysvinit-core/trixie"}, false},
		{"important disk", "important", disk, []string{"linux-image-amd64"}, false},
		{"minbase tarball", "minbase", []config.Output{{Type: "tarball", Path: "t.tar"}}, nil, false},
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
