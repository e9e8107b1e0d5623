// Package buildlog is the build's two voices: a full log file with every
// command and its output, and a compact one-line-per-step account on the
// terminal.
package buildlog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/run"
)

// Log writes the full build log to a file and step lines to the terminal.
// It is safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	file  io.Writer // full log (may be io.Discard)
	term  io.Writer // compact progress (may be io.Discard)
	path  string
	tail  *Tail
	start time.Time
	step  string
	stepT time.Time
	Steps []StepTime // completed steps with their durations, in order
	TTY   bool       // the terminal is interactive: progress is redrawn in place
	// bar is the progress line drawn under the step's lines on a
	// terminal ("" = none): cleared before any other line is printed and
	// drawn again after it.
	bar string
	// counter is the progress counter being shown and when it started,
	// for its rate.
	counter  string
	counterT time.Time
}

// StepTime is one finished step, when it started and how long it took.
type StepTime struct {
	Name     string
	Start    time.Time
	Duration time.Duration
}

// New returns a Log writing the full log to file (path is shown to the user
// in error messages) and progress to term.
func New(file io.Writer, path string, term io.Writer) *Log {
	if file == nil {
		file = io.Discard
	}
	if term == nil {
		term = io.Discard
	}
	return &Log{file: file, term: term, path: path, tail: NewTail(40), start: time.Now()}
}

// Discard is a Log that writes nowhere; for tests.
func Discard() *Log { return New(nil, "", nil) }

// Path is the full log's file name.
func (l *Log) Path() string { return l.path }

// Step starts a named step: the previous one is finished and timed.
func (l *Log) Step(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finishLocked()
	l.step, l.stepT = name, time.Now()
	l.termLine("==> " + name)
	fmt.Fprintf(l.file, "\n==> %s [%s]\n", name, time.Now().UTC().Format(time.RFC3339))
}

// Done finishes the current step.
func (l *Log) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finishLocked()
}

func (l *Log) finishLocked() {
	if l.step == "" {
		return
	}
	d := time.Since(l.stepT)
	l.Steps = append(l.Steps, StepTime{l.step, l.stepT, d})
	fmt.Fprintf(l.file, "<== %s (%.1fs)\n", l.step, d.Seconds())
	if l.TTY {
		l.clearBar()
		fmt.Fprintf(l.term, "<== %s (%s)\n", l.step, Duration(d))
	}
	l.step, l.counter = "", ""
}

// Printf writes a line to both the terminal and the log.
func (l *Log) Printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := Redact(strings.TrimRight(fmt.Sprintf(format, a...), "\n"))
	l.termLine("    " + msg)
	fmt.Fprintf(l.file, "%s\n", msg)
}

// Progress shows a counter for a long step. On a terminal it is a bar
// with the count and the rate, redrawn in place under the step's lines;
// otherwise a line at every quarter. The log file gets nothing (the
// command's own lines are there).
func (l *Log) Progress(what string, done, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total <= 0 {
		return
	}
	now := time.Now()
	if what != l.counter {
		l.counter, l.counterT = what, now
	}
	if l.TTY {
		if done >= total {
			l.clearBar()
			fmt.Fprintf(l.term, "    %s: %d/%d in %s\n", what, total, total, Duration(now.Sub(l.counterT)))
			l.counter = ""
			return
		}
		l.clearBar()
		l.bar = Bar(what, done, total, now.Sub(l.counterT))
		fmt.Fprint(l.term, l.bar)
		return
	}
	q := func(n int) int { return n * 4 / total }
	if done == total || q(done) != q(done-1) {
		fmt.Fprintf(l.term, "    %s: %d/%d\n", what, done, total)
	}
}

// termLine prints a line on the terminal, above the progress bar if one
// is drawn.
func (l *Log) termLine(s string) {
	if l.bar == "" {
		fmt.Fprintln(l.term, s)
		return
	}
	bar := l.bar
	l.clearBar()
	fmt.Fprintln(l.term, s)
	l.bar = bar
	fmt.Fprint(l.term, bar)
}

// clearBar erases the progress bar from the terminal.
func (l *Log) clearBar() {
	if l.bar != "" {
		fmt.Fprint(l.term, "\r\033[K")
		l.bar = ""
	}
}

// barWidth is the number of cells of a progress bar.
const barWidth = 24

// Bar draws a progress bar line (without a newline): the bar, the count,
// the rate per second once it can be told, and what is counted.
func Bar(what string, done, total int, elapsed time.Duration) string {
	done = max(0, min(done, total))
	fill := done * barWidth / total
	b := "    [" + strings.Repeat("#", fill) + strings.Repeat(".", barWidth-fill) + "] " + fmt.Sprintf("%d/%d", done, total)
	if s := elapsed.Seconds(); s >= 1 && done > 0 {
		b += fmt.Sprintf(" %.1f/s", float64(done)/s)
	}
	return b + " " + what
}

// Duration writes a step's time as people read it: 4.2s, 1m05s, 1h02m.
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// Logf writes a line to the log file only.
func (l *Log) Logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.file, "%s\n", Redact(strings.TrimRight(fmt.Sprintf(format, a...), "\n")))
}

// Writer returns a writer whose lines go to the log file, the tail kept
// for error messages and, when echo is set, the terminal.
func (l *Log) Writer(echo bool) io.Writer {
	return &lineWriter{lw: run.LineWriter{Line: func(s string) { l.line(s, echo) }}}
}

// LastLines returns the last lines of command output, for error messages.
func (l *Log) LastLines() []string { return l.tail.Lines() }

type lineWriter struct {
	mu sync.Mutex
	lw run.LineWriter
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lw.Write(p)
}

// line writes one line of command output to the log file, the tail and,
// with echo, the terminal. Whole lines, so that a URL split across writes
// is still redacted.
func (l *Log) line(s string, echo bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.file, "%s\n", Redact(s))
	s = Redact(strings.TrimRight(s, "\r"))
	l.tail.Add(s)
	if echo {
		l.termLine("    | " + s)
	}
}

// userinfoRE finds the user and password part of a URL.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@`)

// Redact replaces the user and password of every URL in s with ***: a
// mirror's credentials must reach neither the log nor the terminal.
func Redact(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfoRE.ReplaceAllString(s, "${1}***@")
}

// CommandError is a failed command with the last lines of its output.
type CommandError struct {
	Cmd string
	// Args are its arguments, credentials redacted (nil for a Secret
	// command).
	Args    []string
	Err     error
	Last    []string
	LogPath string
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Cmd, e.Err)
	if len(e.Last) > 0 {
		b.WriteString("\n  last output:")
		for _, l := range e.Last {
			b.WriteString("\n    " + l)
		}
	}
	if e.LogPath != "" {
		fmt.Fprintf(&b, "\n  full log: %s", e.LogPath)
	}
	return b.String()
}

func (e *CommandError) Unwrap() error { return e.Err }

// Cmd describes one command to run. Env is added to a clean environment
// (PATH, LANG=C.UTF-8 and the caller's entries).
type Cmd struct {
	Name   string
	Args   []string
	Env    []string
	Dir    string
	Stdin  io.Reader
	Stdout io.Writer // when set, stdout goes here instead of the log
	Echo   bool      // also show the output on the terminal
	// Secret hides the arguments in the log (for example a password on stdin
	// is never in the arguments, but a command line may still be sensitive).
	Secret bool
	// Brief, when set, is logged in place of the arguments (a list of
	// thousands of package names summarised); errors still carry them.
	Brief string
	// Root, when set, is the directory the command runs chrooted into
	// (Name is looked up on the PATH inside it).
	Root string
	// Line, when set, also gets every line of output the log gets (for
	// a progress counter such as PackageProgress).
	Line func(string)
}

// BaseEnv is the environment every command starts from: no locale or
// terminal surprises from the caller.
func BaseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	return []string{"PATH=" + path, "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb"}
}

// LookPath finds a binary on the PATH commands run with (BaseEnv's: sbin
// directories included, which a user's own PATH may lack).
func LookPath(name string) (string, error) {
	path := ""
	for _, e := range BaseEnv() {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			path = p
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH", name)
}

// Tool is name's full path, or name itself when it is not found, so that
// the command fails with the runner's own "not found" error.
func Tool(name string) string {
	if p, err := LookPath(name); err == nil {
		return p
	}
	return name
}

// Run runs c under ctx (see run.Run: its own process group, killed as a
// whole when ctx ends), logging the command line, its output and the time
// it took. On failure the error carries the last lines of output and the
// log's path.
func (l *Log) Run(ctx context.Context, c Cmd) error {
	line := c.Name + " " + strings.Join(c.Args, " ")
	switch {
	case c.Secret:
		line = c.Name + " (arguments hidden)"
	case c.Brief != "":
		line = c.Name + " " + c.Brief
	}
	if c.Root != "" {
		line = "(in " + c.Root + ") " + line
	}
	l.Logf("$ %s", line)
	l.tail.Reset()
	t0 := time.Now()
	ps, err := run.Run(ctx, run.Cmd{
		Name: c.Name, Args: c.Args, Env: append(BaseEnv(), c.Env...), Dir: c.Dir, Root: c.Root,
		Stdin: c.Stdin, Stdout: c.Stdout,
		Line: func(s string) {
			l.line(s, c.Echo)
			if c.Line != nil {
				c.Line(s)
			}
		},
	})
	if ps != nil {
		l.Logf("(%.2fs, user %.2fs, sys %.2fs)", time.Since(t0).Seconds(), ps.UserTime().Seconds(), ps.SystemTime().Seconds())
	}
	if err != nil {
		var args []string
		if !c.Secret {
			for _, a := range c.Args {
				args = append(args, Redact(a))
			}
		}
		return &CommandError{Cmd: c.Name, Args: args, Err: err, Last: l.tail.Lines(), LogPath: l.path}
	}
	return nil
}

// Tail keeps the last n lines written to it.
type Tail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

// NewTail returns a Tail keeping n lines.
func NewTail(n int) *Tail { return &Tail{n: n} }

// Add appends a line.
func (t *Tail) Add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

// Reset forgets everything.
func (t *Tail) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = nil
}

// Lines returns a copy of the kept lines, at most 15 of the newest.
func (t *Tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lines
	if len(l) > 15 {
		l = l[len(l)-15:]
	}
	return append([]string(nil), l...)
}
