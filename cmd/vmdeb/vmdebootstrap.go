package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"vmdeb/internal/build"
	"vmdeb/internal/config"
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
			for _, x := range a {
				if x == "--help" || x == "-h" {
					s := &vmdebootstrap.Settings{}
					fmt.Printf("Usage: vmdeb vmdebootstrap [OPTIONS]\n\n%s", s.FlagSet().FlagUsages())
					return nil
				}
			}
			return runVmdebootstrap(cmd.Context(), a)
		},
	}
	// Parsed by vmdebootstrap.Parse; declared here too so that the man
	// page and the shell completions know them.
	c.Flags().AddFlagSet((&vmdebootstrap.Settings{}).FlagSet())
	return c
}

func runVmdebootstrap(ctx context.Context, args []string) error {
	s, err := vmdebootstrap.Parse(args)
	if err != nil {
		return &usageError{err}
	}
	if s.DumpConfig {
		fmt.Print(s.INI())
		return nil
	}
	if err := s.Validate(); err != nil {
		return &usageError{err}
	}
	cwd, _ := os.Getwd()
	text, err := s.YAML(cwd)
	if err != nil {
		return &usageError{err}
	}
	dir, err := os.MkdirTemp("", "vmdeb-vmdebootstrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "vmdebootstrap.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return err
	}
	// The config is checked like any other: errors name the option's key.
	if _, err := config.Load(cfg); err != nil {
		return &usageError{fmt.Errorf("the options make an invalid config:\n%v\n%s", err, text)}
	}
	if s.DryRun {
		fmt.Print(text)
		return nil
	}
	if err := build.RequireRoot(); err != nil {
		return err
	}
	if err := buildOne(ctx, cfg, buildFlags{logPath: s.Log}, nil); err != nil {
		return err
	}
	if s.Owner != "" {
		return chownOutputs(s, cfg)
	}
	return nil
}

// chownOutputs gives every output to --owner, as vmdebootstrap did.
func chownOutputs(s *vmdebootstrap.Settings, cfg string) error {
	u, err := user.Lookup(s.Owner)
	if err != nil {
		return fmt.Errorf("--owner: %w", err)
	}
	spec, err := config.Load(cfg)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, o := range spec.Outputs {
		p := spec.Path(o.Path)
		if err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), p).Run(); err != nil {
			return fmt.Errorf("--owner: chown %s: %w", p, err)
		}
	}
	return nil
}
