package vmdebootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"vmdeb/internal/config"
)

// UsageError is a refusal of the options or config files: nothing was
// built.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Runner is what Run needs from the program around it.
type Runner struct {
	Stdout, Stderr io.Writer
	// Build builds the vmdeb config file config, writing the build log to
	// logPath ("" for vmdeb's default).
	Build func(ctx context.Context, config, logPath string) error
	// DefaultConfigs are the config files read before --config's
	// (nil: DefaultConfigFiles()).
	DefaultConfigs []string
}

// Strictness is said once per run: where vmdeb stops and vmdebootstrap
// went on.
const Strictness = "vmdeb is stricter than vmdebootstrap: a failing --customize script or a squashfs too small to be whole stops the build, and a missing script is refused (docs/vmdebootstrap.md)"

// Run is `vmdeb vmdebootstrap ARGS`: it reads the options and config
// files as vmdebootstrap did, checks them, writes the vmdeb config and
// its hook into a temporary directory and builds it.
func Run(ctx context.Context, args []string, r Runner) error {
	if r.Stdout == nil {
		r.Stdout = os.Stdout
	}
	if r.Stderr == nil {
		r.Stderr = os.Stderr
	}
	defaults := r.DefaultConfigs
	if defaults == nil {
		defaults = DefaultConfigFiles()
	}
	s, err := ParseWith(args, defaults)
	if err != nil {
		return &UsageError{err}
	}
	switch s.Action {
	case "help", "help-all":
		fmt.Fprint(r.Stdout, Usage())
		return nil
	case "version":
		fmt.Fprintln(r.Stdout, Version)
		return nil
	case "dump-setting-names":
		for _, st := range settings {
			fmt.Fprintln(r.Stdout, st.name)
		}
		return nil
	case "list-config-files":
		fmt.Fprintln(r.Stdout, strings.Join(s.Candidates, "\n"))
		return nil
	case "dump-config":
		fmt.Fprint(r.Stdout, s.INI())
		return nil
	}
	if len(s.ConfigFiles) > 0 {
		fmt.Fprintf(r.Stderr, "vmdebootstrap: config files read: %s\n", strings.Join(s.ConfigFiles, ", "))
	}
	if err := s.Validate(); err != nil {
		return &UsageError{err}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vmdeb-vmdebootstrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := s.Config(cwd, dir, os.Environ())
	if err != nil {
		return &UsageError{err}
	}
	cfg := filepath.Join(dir, ConfigName)
	if err := os.WriteFile(cfg, []byte(b.YAML), 0o600); err != nil {
		return err
	}
	for name, h := range map[string]string{HookName: b.Hook, ImageHookName: b.ImageHook} {
		if h == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(h), 0o700); err != nil {
			return err
		}
	}
	// The config is checked like any other: errors name the key.
	if _, err := config.Load(cfg); err != nil {
		return &UsageError{fmt.Errorf("the options make an invalid vmdeb config:\n%v\n%s", err, b.YAML)}
	}
	fmt.Fprintf(r.Stderr, "vmdebootstrap: %s\n", Strictness)
	for _, n := range s.Notes() {
		fmt.Fprintf(r.Stderr, "vmdebootstrap: %s\n", n)
	}
	if s.Bool("dry-run") {
		fmt.Fprint(r.Stdout, b.YAML)
		return nil
	}
	logPath := s.Str("log")
	if logPath == "stderr" || logPath == "syslog" || logPath == "none" {
		logPath = ""
	}
	if err := r.Build(ctx, cfg, logPath); err != nil {
		return err
	}
	if q := s.Str("squash"); q != "" {
		if err := copyBootFiles(filepath.Join(dir, BootStage), absFrom(cwd, q)); err != nil {
			return fmt.Errorf("--squash: %w", err)
		}
	}
	if o := s.Str("owner"); o != "" {
		return chown(o, s, cwd)
	}
	return nil
}

func absFrom(cwd, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cwd, p)
}

// copyBootFiles puts the image's /boot files (vmlinuz-VERSION,
// initrd.img-VERSION, config-VERSION, System.map-VERSION) beside the
// squashfs, as vmdebootstrap's squash_rootfs did and live-wrapper
// expects. With one kernel, its vmlinuz-VERSION and initrd.img-VERSION
// are the build's vmlinuz and initrd.img: what the squashfs boots with.
func copyBootFiles(stage, dir string) error {
	ents, err := os.ReadDir(stage)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var kernels, initrds int
	for _, e := range ents {
		kernels += btoi(strings.HasPrefix(e.Name(), "vmlinuz-"))
		initrds += btoi(strings.HasPrefix(e.Name(), "initrd.img-"))
	}
	for _, e := range ents {
		src := filepath.Join(stage, e.Name())
		switch {
		case kernels == 1 && strings.HasPrefix(e.Name(), "vmlinuz-") && exists(filepath.Join(dir, "vmlinuz")):
			src = filepath.Join(dir, "vmlinuz")
		case initrds == 1 && strings.HasPrefix(e.Name(), "initrd.img-") && exists(filepath.Join(dir, "initrd.img")):
			src = filepath.Join(dir, "initrd.img")
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, e.Name())
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// chown gives the output to --owner as filesystem.chown did: chown -R
// OWNER (a user, user:group, or numeric ids) on the image, else the
// tarball, else the squash directory.
func chown(owner string, s *Settings, cwd string) error {
	var target string
	for _, o := range []string{"image", "tarball", "squash"} {
		if target == "" && s.Str(o) != "" {
			target = absFrom(cwd, s.Str(o))
		}
	}
	if target == "" {
		return nil
	}
	out, err := exec.Command("chown", "-R", "--", owner, target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("--owner: chown -R %s %s: %v: %s", owner, target, err, strings.TrimSpace(string(out)))
	}
	return nil
}
