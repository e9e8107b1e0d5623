package build

import (
	"slices"
	"testing"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/config"
)

// The installer stage runs once the chroot is down and finalise has read
// the manifest, before the live ISO that carries its result; a plan with
// no live ISO, or no live.installer, has none.
func TestStagesInstaller(t *testing.T) {
	names := func(p *Plan) []string {
		var n []string
		for _, st := range Stages(p) {
			n = append(n, st.Name())
			if st.Name() == "installer" && needsChroot(st) {
				t.Error("the installer stage asks for the chroot")
			}
		}
		return n
	}
	s := specFiles(t, "live:\n  installer: true\n", nil)
	p := &Plan{Spec: s, Bootstrap: bootstrap.Debootstrap{}}
	n := names(p)
	i := slices.Index(n, "installer")
	if i < 1 || n[i-1] != "finalise" || i+1 >= len(n) || n[i+1] != "live-iso" {
		t.Errorf("stages %v: want installer between finalise and live-iso", n)
	}

	s.Outputs = []config.Output{{Type: config.Tarball, Path: "t.tar"}}
	if n := names(p); slices.Contains(n, "installer") {
		t.Errorf("stages %v: an installer with no live ISO", n)
	}
	s = specFiles(t, "", nil)
	if n := names(&Plan{Spec: s, Bootstrap: bootstrap.Debootstrap{}}); slices.Contains(n, "installer") {
		t.Errorf("stages %v: an installer nobody asked for", n)
	}
}
