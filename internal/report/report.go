// Package report is vmdeb's machine-readable output: the JSON documents
// that `vmdeb check --json` and `vmdeb build --json/--report` write. The
// types here are the schema (docs/json.md, docs/vmdeb-report.schema.json);
// a change that removes or retypes a field raises SchemaVersion.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
)

// SchemaVersion is the version of the documents' layout. Fields may be
// added without raising it; none is removed or changes meaning.
const SchemaVersion = 1

// Kinds of document.
const (
	KindCheck = "check"
	KindBuild = "build"
)

// Check is what `vmdeb check --json` prints.
type Check struct {
	SchemaVersion int    `json:"schema_version"`
	Kind          string `json:"kind"` // "check"
	VmdebVersion  string `json:"vmdeb_version"`
	ConfigFile    string `json:"config_file"`
	OK            bool   `json:"ok"`
	ExitStatus    int    `json:"exit_status"`
	// Config is the resolved config; absent when it could not be read.
	Config json.RawMessage `json:"config,omitempty"`
	// Plan is absent when the check failed before the plan was made, and
	// for a build in a builder VM (the VM has the tools; only the config
	// is checked).
	Plan *Plan `json:"plan,omitempty"`
	// Outputs are the files the build would write.
	Outputs []File `json:"outputs,omitempty"`
	Error   *Error `json:"error,omitempty"`
}

// Build is what `vmdeb build --report FILE` writes and `--json` prints.
type Build struct {
	SchemaVersion int             `json:"schema_version"`
	Kind          string          `json:"kind"` // "build"
	VmdebVersion  string          `json:"vmdeb_version"`
	ConfigFile    string          `json:"config_file"`
	OK            bool            `json:"ok"`
	ExitStatus    int             `json:"exit_status"`
	Started       *time.Time      `json:"started,omitempty"`
	Duration      float64         `json:"duration_seconds"`
	Config        json.RawMessage `json:"config,omitempty"`
	Plan          *Plan           `json:"plan,omitempty"`
	Stages        []Stage         `json:"stages"`
	Cache         Cache           `json:"cache"`
	Outputs       []File          `json:"outputs"`
	Log           string          `json:"log,omitempty"`
	Error         *Error          `json:"error,omitempty"`
	// Job is the job of a plan this build made (vmdeb build --plan FILE
	// --job ID); absent for a build not started from a plan.
	Job *JobRef `json:"job,omitempty"`
}

// JobRef names the job of a plan (vmdeb plan) that a build made, and the
// plan's other jobs, so that the outputs of all jobs can be gathered and
// checked for completeness without the plan file (vmdeb publish).
type JobRef struct {
	ID string `json:"id"`
	// PlanSHA256 is the SHA256 of the plan document the job was taken from.
	PlanSHA256 string `json:"plan_sha256"`
	// PlanJobs are the ids of every job of that plan, this one included.
	PlanJobs []string `json:"plan_jobs"`
}

// Plan is what the build resolved from the config and the host.
type Plan struct {
	Isolation       string   `json:"isolation"` // host, userns or vm
	Suite           string   `json:"suite"`
	Architecture    string   `json:"architecture"`
	Bootstrap       string   `json:"bootstrap"`
	Mirror          string   `json:"mirror"`
	AptMirror       string   `json:"apt_mirror"`
	SecurityMirror  string   `json:"security_mirror"`
	Updates         bool     `json:"updates"`
	Packages        []string `json:"packages"`
	SourceDateEpoch int64    `json:"source_date_epoch,omitempty"`
	Notes           []string `json:"notes"`
}

// Stage is one step of a build, in the order run.
type Stage struct {
	Name     string    `json:"name"`
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_seconds"`
}

// Cache is what the stage cache did.
type Cache struct {
	Enabled bool          `json:"enabled"`
	Dir     string        `json:"dir,omitempty"`
	Stages  []CacheResult `json:"stages"`
	// Remote is what the remote cache (--remote-cache) did; absent when
	// none is set.
	Remote *RemoteCache `json:"remote,omitempty"`
	// Squashfs is what the squashfs block cache (inside the stage cache)
	// did for each squashfs the build made; absent when none was made or
	// the cache is off.
	Squashfs []SquashfsBlocks `json:"squashfs_blocks,omitempty"`
	// Packages is what the package cache did for the packages the
	// packages stage fetched ahead of apt; absent when it fetched none
	// (the stage came from the cache, or apt had nothing to fetch).
	Packages *PackageCache `json:"packages,omitempty"`
}

// PackageCache is what the machine's package cache did for a build's
// packages: how many it held already and how many were downloaded into
// it (a package that could not be fetched is left to apt and counted in
// neither).
type PackageCache struct {
	Dir        string `json:"dir"`
	Reused     int    `json:"reused"`
	Downloaded int    `json:"downloaded"`
}

// SquashfsBlocks is what the block cache did for one squashfs: how many
// data and fragment blocks it has, how many distinct ones were taken from
// the cache and how many compressed.
type SquashfsBlocks struct {
	Image      string `json:"image"`
	Used       bool   `json:"used"`
	Reason     string `json:"reason,omitempty"` // why it was not used
	Blocks     int    `json:"blocks"`
	Reused     int    `json:"reused"`
	Compressed int    `json:"compressed"`
	Damaged    int    `json:"damaged"` // entries refused as damaged (and compressed again)
}

// RemoteCache is what the build fetched from and stored in an OCI
// registry (docs/remote-cache.md).
type RemoteCache struct {
	URL string `json:"url"` // oci://HOST[:PORT]/REPOSITORY
	// Stages has one record per cached stage looked up or pushed, in
	// the order it happened.
	Stages []RemoteStage `json:"stages"`
	// Debs counts the package files of the native bootstrapper.
	Debs RemoteDebs `json:"debs"`
	// Warning is the registry failure the build went on without (the
	// first one), if any.
	Warning string `json:"warning,omitempty"`
}

// Remote cache actions.
const (
	RemotePulled     = "pulled"      // fetched, verified and put in the local cache
	RemotePullFailed = "pull-failed" // the registry failed, or what it held was refused
	RemoteMiss       = "miss"        // the registry does not have it
	RemotePushed     = "pushed"      // stored in the registry after the stage ran
	RemotePresent    = "present"     // the registry had it already; nothing sent
	RemotePushFailed = "push-failed" // storing it failed; the build went on
)

// RemoteStage is one stage entry looked up in or sent to the registry.
type RemoteStage struct {
	Stage  string `json:"stage"`
	Key    string `json:"key"`
	Action string `json:"action"`
	// Digest is the artifact's manifest digest (sha256:...), when known.
	Digest string `json:"digest,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RemoteDebs counts package files pulled from and pushed to the registry.
type RemoteDebs struct {
	Pulled     int `json:"pulled"`
	Pushed     int `json:"pushed"`
	PullFailed int `json:"pull_failed"`
	PushFailed int `json:"push_failed"`
}

// Cache actions.
const (
	CacheRestored   = "restored"    // taken from the cache; the stage did not run
	CacheSaved      = "saved"       // the stage ran and its result was stored
	CacheNotSaved   = "not-saved"   // the stage ran; storing its result failed
	CacheNotReached = "not-reached" // the build ended before the stage ran
)

// CacheResult is the cache's decision for one cached stage.
type CacheResult struct {
	Stage  string `json:"stage"`
	Key    string `json:"key"`
	Action string `json:"action"`
	// Reason says why the stage was not restored, or why it was not saved.
	Reason string `json:"reason,omitempty"`
}

// File is one file or directory a build writes.
type File struct {
	// Type is an output's type (live-iso, disk, tarball, directory,
	// squashfs, ext4) or manifest, sbom-spdx, sbom-cyclonedx, sha256sums,
	// log, report.
	Type string `json:"type"`
	Path string `json:"path"`
	// Size and SHA256 are known after a build, for regular files.
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Files are a squashfs output's files (filesystem.squashfs, vmlinuz,
	// initrd.img, filesystem.packages).
	Files []File `json:"files,omitempty"`
}

// Error is why a check or a build failed.
type Error struct {
	// Kind: config (the config file), preflight (the host, the mirror,
	// the paths), usage (the command line), stage (a build stage),
	// interrupted, or failed (anything else).
	Kind    string `json:"kind"`
	Message string `json:"message"`
	// File, Line and Option locate a config error (Line 0: unknown).
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Option string `json:"option,omitempty"`
	// Problems lists every config error when there are several (the
	// first is also in File, Line, Option).
	Problems []Problem `json:"problems,omitempty"`
	Stage    string    `json:"stage,omitempty"`
	Command  *Command  `json:"command,omitempty"`
	Log      string    `json:"log,omitempty"`
}

// Problem is one config error.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Option  string `json:"option,omitempty"`
	Message string `json:"message"`
}

// Command is a command that failed during a build.
type Command struct {
	// Name is the program vmdeb ran: chroot for a command run in the
	// image (Args then start with the image's root and the command).
	Name string `json:"name"`
	// Args are its arguments, credentials redacted; absent for a command
	// whose arguments the log hides too.
	Args []string `json:"args,omitempty"`
	// ExitStatus is the command's exit status; absent when it did not
	// exit (killed by Signal, or it could not start).
	ExitStatus *int   `json:"exit_status,omitempty"`
	Signal     string `json:"signal,omitempty"`
	// LastLines are the last lines of its output.
	LastLines []string `json:"last_lines,omitempty"`
}

// ErrorOf describes err. kind is the caller's classification (see
// Error.Kind); a config error is always "config". Every string has its
// URLs' credentials redacted.
func ErrorOf(err error, kind string) *Error {
	if err == nil {
		return nil
	}
	e := &Error{Kind: kind, Message: buildlog.Redact(err.Error())}
	var ce config.Errors
	var single *config.Error
	switch {
	case errors.As(err, &ce) && len(ce) > 0:
		e.Kind = "config"
		e.File, e.Line, e.Option = ce[0].File, ce[0].Line, ce[0].Key
		if len(ce) > 1 {
			for _, c := range ce {
				e.Problems = append(e.Problems, Problem{c.File, c.Line, c.Key, buildlog.Redact(c.Msg)})
			}
		}
	case errors.As(err, &single):
		e.Kind = "config"
		e.File, e.Line, e.Option = single.File, single.Line, single.Key
	}
	var stage interface{ StageName() string }
	if errors.As(err, &stage) {
		e.Stage = stage.StageName()
	}
	var cmd *buildlog.CommandError
	if errors.As(err, &cmd) {
		c := &Command{Name: cmd.Cmd}
		for _, a := range cmd.Args {
			c.Args = append(c.Args, buildlog.Redact(a))
		}
		for _, l := range cmd.Last {
			c.LastLines = append(c.LastLines, buildlog.Redact(l))
		}
		var xe *exec.ExitError
		if errors.As(cmd.Err, &xe) {
			if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				c.Signal = unixSignalName(ws.Signal())
			} else {
				st := xe.ExitCode()
				c.ExitStatus = &st
			}
		}
		e.Command = c
		e.Log = cmd.LogPath
	}
	return e
}

func unixSignalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT",
		syscall.SIGHUP: "SIGHUP", syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT", syscall.SIGPIPE: "SIGPIPE",
		syscall.SIGBUS: "SIGBUS", syscall.SIGQUIT: "SIGQUIT"}
	if n, ok := names[s]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}

// Hidden stands for a password or password hash in the resolved config.
const Hidden = "(hidden)"

// ConfigJSON is the resolved config as a JSON object keyed as the YAML
// file is (name, suite, outputs, ...), in the order the keys are
// documented, with every default filled in and the file paths it names
// absolute. Passwords and password hashes are replaced by Hidden; URLs
// never carry credentials (the config moves them out at load). Sizes are
// bytes; durations are Go durations ("30m0s").
func ConfigJSON(s *config.Spec) json.RawMessage {
	if s == nil {
		return nil
	}
	c := *s
	for _, p := range []*string{&c.BinfmtHandler, &c.APTAuth, &c.Keyring, &c.Cache, &c.Customise, &c.Live.Splash} {
		*p = s.Path(*p)
	}
	c.CustomPackages = nil
	for _, d := range s.CustomPackages {
		c.CustomPackages = append(c.CustomPackages, s.Path(d))
	}
	c.Outputs = append([]config.Output(nil), s.Outputs...)
	for i := range c.Outputs {
		c.Outputs[i].Path = s.Path(c.Outputs[i].Path)
		if c.Outputs[i].ImageHook != "" {
			c.Outputs[i].ImageHook = s.Path(c.Outputs[i].ImageHook)
		}
	}
	var b strings.Builder
	writeValue(&b, reflect.ValueOf(c), "")
	return json.RawMessage(b.String())
}

var (
	sizeType     = reflect.TypeOf(config.Size{})
	durationType = reflect.TypeOf(config.Duration{})
)

func writeValue(b *strings.Builder, v reflect.Value, key string) {
	switch {
	case v.Type() == sizeType:
		b.WriteString(strconv.FormatInt(v.Interface().(config.Size).Bytes, 10))
		return
	case v.Type() == durationType:
		writeJSON(b, v.Interface().(config.Duration).Duration.String())
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("null")
			return
		}
		writeValue(b, v.Elem(), key)
	case reflect.Struct:
		b.WriteByte('{')
		n := 0
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			writeJSON(b, name)
			b.WriteByte(':')
			writeValue(b, v.Field(i), name)
		}
		b.WriteByte('}')
	case reflect.Slice:
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			writeValue(b, v.Index(i), key)
		}
		b.WriteByte(']')
	case reflect.String:
		s := v.String()
		if s != "" && (key == "password" || key == "password-hash") {
			s = Hidden
		}
		writeJSON(b, buildlog.Redact(s))
	default:
		writeJSON(b, v.Interface())
	}
}

func writeJSON(b *strings.Builder, x any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		b.WriteString("null")
		return
	}
	b.Write(bytes.TrimRight(buf.Bytes(), "\n"))
}

// Marshal is the document as vmdeb writes it: indented, ending in a
// newline.
func Marshal(doc any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Seconds is d in seconds, to the millisecond.
func Seconds(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}
