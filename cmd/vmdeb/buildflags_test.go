package main

import (
	"slices"
	"strings"
	"testing"
)

// The build in its namespaces gets the options the user gave: its
// command line, parsed by vmdeb build's own flags, gives them back.
func TestInnerBuildArgs(t *testing.T) {
	t.Setenv("VMDEB_STAGE_CACHE", "")
	for _, line := range []string{
		"--no-cache",
		"--workdir /big --keep-work --log /l/b.log -o out --report /r/b.json --json --stage-cache /sc",
		"--stage-cache /sc --log=--json",
		"--isolation userns --outdir o --stage-cache off",
		"--turn /s/turn --turn-ready /s/3.ready --no-cache",
	} {
		var f buildFlags
		c := newBuildCmd(&f)
		if err := c.ParseFlags(strings.Fields(line)); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		argv := f.inner("c.yaml").Argv()
		if argv[0] != "build" || argv[len(argv)-1] != "c.yaml" {
			t.Errorf("%s: argv %q", line, argv)
			continue
		}
		var g buildFlags
		if err := newBuildCmd(&g).ParseFlags(argv[1 : len(argv)-1]); err != nil {
			t.Fatalf("%s: argv %q: %v", line, argv, err)
		}
		fd, _ := f.cache.dir()
		gd, _ := g.cache.dir()
		if f.run.WorkDir != g.run.WorkDir || f.run.KeepWork != g.run.KeepWork || f.turn != g.turn || f.logPath != g.logPath || f.outDir != g.outDir || f.report != g.report || fd != gd {
			t.Errorf("%s: argv %q parses to %+v, want %+v", line, argv, g, f)
		}
		// Isolation was decided by now: the inner build is told nothing of it.
		if slices.Contains(argv, "--isolation") {
			t.Errorf("%s: argv %q passes --isolation on", line, argv)
		}
	}
}
