package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"vmdeb/internal/ns"
	"vmdeb/internal/shell"
)

// shellFlags are vmdeb shell's options.
type shellFlags struct {
	writable, verbose bool
	outDir            string
}

func shellCmd() *cobra.Command {
	var f shellFlags
	c := &cobra.Command{
		Use:   "shell CONFIG|IMAGE|DIR [-- COMMAND...]",
		Short: "Open a shell (or run a command) inside a built image without booting it",
		Long: `Open a shell (or run COMMAND) inside a built image without booting it.

The image is a config file (its first output, as built), a directory
output, a root file system tarball, a squashfs (or a squashfs output's
directory), a live ISO (its live/filesystem.squashfs) or a raw or qcow2
disk image (its root partition). It gets /proc, /sys, a private /dev, a
tmpfs /run and the host's resolv.conf, in private mount and PID
namespaces as a build has: when the shell ends, or vmdeb is killed,
every mount and process goes with it. A foreign architecture's programs
run through the host's qemu-user binfmt handler.

Without --writable the image is read-only under a temporary overlay:
the shell can write (/tmp, apt's lists), and everything written is
discarded at its end. --writable changes a directory output or a raw or
qcow2 disk image in place.

As root every kind opens; as an ordinary user a directory or tarball
opens in a user namespace with the user's subordinate ids.

Exit status: COMMAND's (the shell's); 1 when the image cannot be opened;
2 bad input.`,
		Args: func(cmd *cobra.Command, a []string) error {
			n := len(a)
			if d := cmd.ArgsLenAtDash(); d >= 0 {
				n = d
			}
			if n != 1 {
				return &usageError{fmt.Errorf("shell takes one image (and -- COMMAND...), got %d argument(s) before -- (see vmdeb shell --help)", n)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, a []string) error {
			var command []string
			if d := cmd.ArgsLenAtDash(); d >= 0 {
				command = a[d:]
			}
			return runShell(cmd.Context(), a[0], command, f)
		},
	}
	c.Flags().BoolVar(&f.writable, "writable", false, "change the image itself (a directory output, a raw or qcow2 disk image); without it changes are discarded")
	c.Flags().StringVarP(&f.outDir, "outdir", "o", "", "a config's outputs are in this directory (as vmdeb build --outdir wrote them)")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "say what is mounted")
	return c
}

// shellArgv is the command line of the shell's own vmdeb process, in
// the namespaces: the image resolved to its file.
func shellArgv(t shell.Target, command []string, f shellFlags) []string {
	argv := []string{"shell"}
	if f.writable {
		argv = append(argv, "--writable")
	}
	if f.verbose {
		argv = append(argv, "--verbose")
	}
	return append(append(argv, t.Path, "--"), command...)
}

// runShell is vmdeb shell: checked here, run in a vmdeb process of its
// own in private namespaces (shellInside), whose status it exits with.
func runShell(ctx context.Context, arg string, command []string, f shellFlags) error {
	t, err := shell.Detect(arg, f.outDir)
	if err != nil {
		return &usageError{err}
	}
	if f.writable {
		if err := t.CheckWritable(); err != nil {
			return &usageError{err}
		}
	}
	if ns.Inside() {
		return shellInside(t, command, f)
	}
	argv := shellArgv(t, command, f)
	var code int
	if os.Geteuid() == 0 {
		code, err = ns.Reexec(argv, ns.Stdio{})
	} else {
		if !t.Rootless() {
			return &usageError{fmt.Errorf("%s: a %s opens only as root (its loop device and file system mount need it); as an ordinary user vmdeb shell opens a directory output or a tarball", t.Path, t.Kind)}
		}
		up, uerr := ns.PlanUserns()
		if uerr != nil {
			return &usageError{uerr}
		}
		code, err = ns.ReexecUserns(up, argv, ns.Stdio{})
	}
	if err != nil {
		return &exitError{exitFailed, err}
	}
	if code != 0 {
		// The command's status; it (or the shell's process) said why.
		os.Exit(code)
	}
	return nil
}

// shellInside runs in the shell's namespaces.
func shellInside(t shell.Target, command []string, f shellFlags) error {
	if err := ns.Prepare(); err != nil {
		return &exitError{exitFailed, err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A terminal's Ctrl-C and Ctrl-\ are the command's: this process
	// (PID 1 here) must neither die of them nor make the command ignore
	// them (an ignored signal stays ignored across exec), so it catches
	// and drops them.
	drop := make(chan os.Signal, 4)
	signal.Notify(drop, os.Interrupt, syscall.SIGQUIT)
	defer signal.Stop(drop)
	o := shell.Options{Writable: f.writable, Command: command, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if f.verbose {
		o.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "vmdeb shell: "+format+"\n", a...) }
	}
	if len(command) == 0 {
		how := "read-only; what is written is discarded at exit"
		if f.writable {
			how = "writable: changes are kept"
		}
		fmt.Fprintf(os.Stderr, "vmdeb shell: %s (%s), %s\n", t.Path, t.Kind, how)
	}
	code, err := shell.Run(ctx, t, o)
	err = errors.Join(err, ns.KillOthers())
	if err != nil {
		return &exitError{exitFailed, err}
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}
