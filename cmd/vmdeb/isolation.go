package main

import (
	"fmt"
	"os"

	"vmdeb/internal/build"
	"vmdeb/internal/config"
)

// checkIsolationFlag validates --isolation.
func checkIsolationFlag(isolation string) error {
	if _, err := config.ParseIsolation(isolation); err != nil {
		return &usageError{err}
	}
	return nil
}

// isolationFor decides where a config's build runs (config.ChooseIsolation)
// for this user, with --isolation flag.
func isolationFor(s *config.Spec, flag string) (config.Isolation, error) {
	where, err := config.ChooseIsolation(config.Isolation(flag), s.Isolation, os.Geteuid() == 0)
	if err != nil {
		return "", &build.PreflightError{Err: fmt.Errorf("%s: %w", s.File, err)}
	}
	return where, nil
}
