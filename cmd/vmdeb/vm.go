package main

import (
	"context"
	"errors"

	"vmdeb/internal/build"
	"vmdeb/internal/config"
)

// buildInVM builds path inside a builder VM (isolation: vm).
func buildInVM(ctx context.Context, path string, s *config.Spec, o build.RunOptions, cf cacheFlags, logPath, outDir string) error {
	return &exitError{exitFailed, errors.New("isolation: vm is not built yet")}
}
