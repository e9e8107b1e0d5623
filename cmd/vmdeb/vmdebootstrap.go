package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"vmdeb/internal/build"
	"vmdeb/internal/vmdebootstrap"
)

// vmdebootstrapCmd takes vmdebootstrap's options and config files and runs
// the same build as a vmdeb config would.
func vmdebootstrapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:                "vmdebootstrap [OPTIONS]",
		Short:              "Build with vmdebootstrap's options and config files (see docs/vmdebootstrap.md)",
		DisableFlagParsing: true,
		// Its usage names them: no "[flags]".
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, a []string) error {
			return runVmdebootstrap(cmd.Context(), a)
		},
	}
	// Parsed by vmdebootstrap.Run; declared here too so that the man
	// page and the shell completions know them.
	c.Flags().AddFlagSet(vmdebootstrap.FlagSet())
	return c
}

func runVmdebootstrap(ctx context.Context, args []string) error {
	err := vmdebootstrap.Run(ctx, args, vmdebootstrap.Runner{
		Build: func(ctx context.Context, cfg, logPath string) error {
			if err := build.RequireRoot(); err != nil {
				return err
			}
			return buildOne(ctx, cfg, buildFlags{logPath: logPath}, nil)
		},
	})
	var ue *vmdebootstrap.UsageError
	if errors.As(err, &ue) {
		return &usageError{err}
	}
	return err
}
