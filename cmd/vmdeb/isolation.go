package main

import (
	"fmt"
	"os"
	"slices"

	"vmdeb/internal/build"
	"vmdeb/internal/config"
)

// checkIsolationFlag validates --isolation.
func checkIsolationFlag(iso string) error {
	if iso == "" {
		return nil
	}
	if slices.Contains(config.Isolations, config.Isolation(iso)) {
		return nil
	}
	return &usageError{fmt.Errorf("--isolation %q: valid are %s", iso, config.Join(config.Isolations))}
}

// isolationFor decides where a config's build runs: the command line's
// choice, else the config's isolation:, else host for root and a user
// namespace for anybody else.
func isolationFor(s *config.Spec, flag string) (config.Isolation, error) {
	where := config.Isolation(flag)
	if where == "" {
		where = s.Isolation
	}
	root := os.Geteuid() == 0
	switch where {
	case "":
		if root {
			return config.Host, nil
		}
		return config.Userns, nil
	case config.Host:
		if !root {
			return "", &build.PreflightError{Err: fmt.Errorf("%s: isolation host builds as root on this machine, and you are not root; "+
				"build with --isolation userns (a user namespace) or --vm (a builder VM), or run as root", s.File)}
		}
	}
	return where, nil
}
