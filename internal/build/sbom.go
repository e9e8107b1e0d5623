package build

import (
	"os"
	"strings"
	"time"

	"vmdeb/internal/sbom"
)

// sbomPaths are the SBOMs' names beside an output: its manifest's stem
// with .spdx.json (SPDX 2.3) and .cdx.json (CycloneDX 1.5).
func sbomPaths(out string) (spdx, cdx string) {
	stem := strings.TrimSuffix(manifestPath(out), ".packages")
	return stem + ".spdx.json", stem + ".cdx.json"
}

// sbomTime is the SBOMs' creation date: SOURCE_DATE_EPOCH when set (a
// reproducible build gives the same SBOM), otherwise now.
func (st *State) sbomTime() time.Time {
	if e := st.Plan.SourceDateEpoch; e > 0 {
		return time.Unix(e, 0)
	}
	return time.Now()
}

// writeSBOMs writes the image's SPDX and CycloneDX documents.
func (st *State) writeSBOMs(spdxPath, cdxPath string) error {
	img := sbom.Image{Name: st.Plan.Spec.Name, Suite: st.Plan.Spec.Suite, Arch: st.Plan.Arch.Name, Packages: st.Packages}
	tool := sbom.Tool{Name: "vmdeb", Version: Version}
	when := st.sbomTime()
	spdx, err := sbom.SPDX(img, when, tool)
	if err != nil {
		return err
	}
	cdx, err := sbom.CycloneDX(img, when, tool)
	if err != nil {
		return err
	}
	if err := writeAtomic(spdxPath, spdx); err != nil {
		return err
	}
	return writeAtomic(cdxPath, cdx)
}

// sbomResults are the SBOMs as the report lists them.
func (st *State) sbomResults(paths ...string) []Result {
	kinds := []string{"sbom-spdx", "sbom-cyclonedx"}
	var out []Result
	for i, p := range paths {
		var size int64
		if fi, err := os.Stat(p); err == nil {
			size = fi.Size()
		}
		out = append(out, Result{Type: kinds[i], Path: p, Size: size})
	}
	return out
}
