package buildervm

import "vmdeb/internal/config"

// BuildArgs is the command line of a vmdeb build that runs in a process
// of its own: the build in its namespaces that vmdeb build starts, the
// build in the builder VM, and the build that makes a builder image. The
// options mean what vmdeb build's flags of the same names mean.
type BuildArgs struct {
	Isolation config.Isolation // --isolation ("" = none given)
	WorkDir   string           // --workdir
	KeepWork  bool             // --keep-work
	Log       string           // --log
	OutDir    string           // --outdir
	Report    string           // --report
	JSON      bool             // --json
	// StageCache is --stage-cache DIR; "" is --no-cache.
	StageCache string
	Config     string // the config file
	// JobRef is the plan job the build makes, as JSON (report.JobRef),
	// for its report; "" = none.
	JobRef string
	// Turn and TurnReady are an image of a set's turn lock and the file
	// it writes once its shared stages are in place (vmdeb build DIR,
	// internal/buildset); "" = not in a set.
	Turn, TurnReady string
}

// Argv is the arguments of the vmdeb that builds (without the binary).
func (b BuildArgs) Argv() []string {
	a := []string{"build"}
	opt := func(flag, v string) {
		if v != "" {
			a = append(a, flag, v)
		}
	}
	opt("--isolation", string(b.Isolation))
	opt("--workdir", b.WorkDir)
	if b.KeepWork {
		a = append(a, "--keep-work")
	}
	opt("--log", b.Log)
	opt("--outdir", b.OutDir)
	opt("--report", b.Report)
	opt("--job-ref", b.JobRef)
	opt("--turn", b.Turn)
	opt("--turn-ready", b.TurnReady)
	if b.JSON {
		a = append(a, "--json")
	}
	if b.StageCache == "" {
		a = append(a, "--no-cache")
	} else {
		a = append(a, "--stage-cache", b.StageCache)
	}
	return append(a, b.Config)
}
