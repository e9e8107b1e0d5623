package build

import (
	"slices"
	"testing"

	"vmdeb/internal/bootstrap"
)

// common-packages is a stage of its own, in the chroot, cached, between
// the bootstrap and the packages, only when the config has them.
func TestCommonPackagesStage(t *testing.T) {
	names := func(s []Stage) (all, cachedNames []string) {
		for _, st := range s {
			all = append(all, st.Name())
			if _, ok := st.(cached); ok {
				cachedNames = append(cachedNames, st.Name())
			}
		}
		return
	}
	p := &Plan{Spec: spec(t, "common-packages: [live-task-base]\npackages: [task-english]\n"), Bootstrap: bootstrap.Debootstrap{}}
	stages := Stages(p)
	all, c := names(stages)
	if len(all) < 3 || !slices.Equal(all[:3], []string{"bootstrap", "common-packages", "packages"}) || !needsChroot(stages[1]) {
		t.Errorf("stages %v, want bootstrap, common-packages (in the chroot), packages first", all)
	}
	if want := []string{"bootstrap", "common-packages", "packages"}; !slices.Equal(c, want) {
		t.Errorf("cached %v, want %v", c, want)
	}
	p = &Plan{Spec: spec(t, "packages: [task-english]\n"), Bootstrap: bootstrap.Debootstrap{}}
	if all, _ := names(Stages(p)); slices.Contains(all, "common-packages") {
		t.Errorf("stages %v without common-packages", all)
	}
}
