package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"vmdeb/internal/config"
	"vmdeb/internal/installer"
	"vmdeb/internal/live"
)

// installerStage fetches what a live ISO with live.installer carries to
// install with no network: debian-installer's CD-ROM kernels and initrds,
// the udebs they load, the .debs the installed system needs beyond the
// live system's, and the medium's indices (internal/installer).
type installerStage struct{}

func (installerStage) Name() string { return "installer" }

// wantsInstaller tells whether the plan's live ISOs carry the installer.
func wantsInstaller(p *Plan) bool {
	if !p.Spec.Live.Installer {
		return false
	}
	for _, o := range p.Spec.Outputs {
		if o.Type == config.LiveISO {
			return true
		}
	}
	return false
}

// installerDir is where the stage leaves its result for the live ISO.
func installerDir(st *State) string { return filepath.Join(st.WorkDir, "installer") }

func (installerStage) Run(ctx context.Context, st *State) error {
	p := st.Plan
	st.Log.Printf("fetching debian-installer for %s %s, the udebs it loads and the packages it installs, verified against the archive's signature", p.Spec.Suite, p.Arch.Name)
	installed := map[string]bool{}
	for _, l := range strings.Split(st.Manifest, "\n") {
		if n, _, ok := strings.Cut(l, "\t"); ok {
			installed[n] = true
		}
	}
	f := &installer.Fetcher{Auth: p.Spec.Auth, Log: st.Log.Logf}
	o, err := f.FetchOffline(ctx, installer.OfflineOptions{
		Mirror: p.Mirror, Suite: p.Spec.Suite, Arch: p.Arch.Name, Keyring: p.Spec.Path(p.Spec.Keyring),
		Dir: installerDir(st), Installed: installed, Debs: installer.TargetPackages(p.Arch.Name),
	})
	if err != nil {
		return fmt.Errorf("debian-installer: %w", err)
	}
	if o.Medium == "" {
		st.Log.Printf("installer: WARNING: %s %s has no verifiable CD-ROM images on this mirror; the installer entries carry netboot's (%s), which need a network", p.Spec.Suite, p.Arch.Name, o.Files.Source)
		return nil
	}
	for _, u := range o.Unresolved {
		st.Log.Logf("installer: unresolved: %s", u)
	}
	if len(o.Unresolved) > 0 {
		st.Log.Printf("installer: WARNING: %d dependencies of the medium's packages unresolved, e.g. %s (all in the build log)", len(o.Unresolved), o.Unresolved[len(o.Unresolved)-1])
	}
	st.Log.Printf("installer: %s's CD-ROM images (kernel %s), %d udebs and %d packages (%d MB) for the medium",
		o.Files.Source, o.Kernel, len(o.Udebs), len(o.Debs), o.Bytes>>20)
	st.Log.Logf("installer: packages in the pool: %s", strings.Join(o.Debs, " "))
	return nil
}

// stagedInstaller is the installer stage's result as the live ISO takes it.
func stagedInstaller(st *State) *live.InstallerFiles {
	if !st.Plan.Spec.Live.Installer {
		return nil
	}
	d := installerDir(st)
	_, err := os.Stat(filepath.Join(d, "install", "gtk", "initrd.gz"))
	graphical := err == nil
	medium := filepath.Join(d, "medium")
	if _, err := os.Stat(medium); err != nil {
		medium = "" // netboot's installer: nothing to install from
	}
	return &live.InstallerFiles{Dir: filepath.Join(d, "install"), Graphical: graphical, Medium: medium}
}
