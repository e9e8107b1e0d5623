package bootstrap

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"vmdeb/internal/archive"
)

// TestResolveMatchesDebootstrap: for every variant of the current stable
// suite, and the previous one's buildd, the native bootstrapper picks the package
// set debootstrap picks (`debootstrap --print-debs` resolves without
// installing). TestNativeMatchesDebootstrap installs one of them and
// compares the versions too.
func TestResolveMatchesDebootstrap(t *testing.T) {
	mirror := needArchive(t)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap is not installed")
	}
	variants := map[string][]archive.Variant{
		"trixie": {"minbase", "buildd", "important"},
		// bookworm's buildd chroot stays unmerged: another base set.
		"bookworm": {"buildd"},
	}
	for _, suite := range []string{"trixie", "bookworm"} {
		log, _ := testLog(t)
		n := &Native{CacheDir: cacheDir(t)}
		arc, _, err := n.open(context.Background(), log, Request{Suite: suite, Arch: "amd64", Mirror: mirror, Components: []string{"main"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, variant := range variants[suite] {
			t.Run(suite+"/"+string(variant), func(t *testing.T) {
				t.Parallel() // debootstrap mostly waits for and unpacks the index
				set, err := archive.ResolveBase(arc.Index, variant, arc.Release.Codename, strings.HasPrefix(mirror, "https:"), nil)
				if err != nil {
					t.Fatal(err)
				}
				args := []string{"--print-debs", "--arch=amd64"}
				if variant != "important" {
					args = append(args, "--variant="+string(variant))
				}
				out, err := exec.Command("debootstrap", append(args, suite, t.TempDir(), mirror)...).Output()
				if err != nil {
					t.Fatalf("debootstrap --print-debs: %v\n%s", err, out)
				}
				// Its standard output is the package names (messages go
				// to standard error).
				want := strings.Fields(string(out))
				sort.Strings(want)
				got := archive.Names(set.All())
				if len(want) < 20 {
					t.Fatalf("debootstrap printed %d packages: %q", len(want), out)
				}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("%d packages, debootstrap %d:\n%s", len(got), len(want), diff(got, want))
				}
			})
		}
	}
}
