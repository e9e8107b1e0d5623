package buildlog

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRunLogsAndFails(t *testing.T) {
	var file, term bytes.Buffer
	l := New(&file, "build.log", &term)
	var seen []string
	err := l.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo fetching https://u:pw@m/x; echo oops >&2; exit 3"},
		Line: func(s string) { seen = append(seen, s) }})
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v, want a CommandError", err, err)
	}
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 3 {
		t.Errorf("exit status lost: %v", err)
	}
	if ce.Cmd != "sh" || ce.LogPath != "build.log" || strings.Join(ce.Last, "|") != "fetching https://***@m/x|oops" {
		t.Errorf("error %+v", ce)
	}
	if strings.Join(seen, "|") != "fetching https://u:pw@m/x|oops" {
		t.Errorf("Line got %q", seen)
	}
	if f := file.String(); !strings.Contains(f, "$ sh -c") || !strings.Contains(f, "oops\n") || strings.Contains(f, "pw@") {
		t.Errorf("log file:\n%s", f)
	}
	if term.Len() != 0 {
		t.Errorf("output on the terminal without Echo: %q", term.String())
	}
}

func TestRunEcho(t *testing.T) {
	var term bytes.Buffer
	l := New(nil, "", &term)
	if err := l.Run(context.Background(), Cmd{Name: "echo", Args: []string{"hello"}, Echo: true}); err != nil {
		t.Fatal(err)
	}
	if term.String() != "    | hello\n" {
		t.Errorf("terminal: %q", term.String())
	}
}

func TestPackageProgress(t *testing.T) {
	var term bytes.Buffer
	l := New(nil, "", &term)
	p := NewPackageProgress(l, 0)
	for _, s := range []string{"0 upgraded, 4 newly installed, 0 to remove and 0 not upgraded.",
		"Get:1 http://m/debian trixie/main amd64 a amd64 1 [1 kB]", "Get:2 http://m/debian trixie/main amd64 b amd64 1 [1 kB]",
		"Setting up a (1) ...", "Setting up b (1) ...", "Setting up c (1) ...", "Setting up d (1) ...", "Setting up e (1) ..."} {
		p.Line(s)
	}
	want := "    downloading: 1/4\n    downloading: 2/4\n    packages set up: 1/4\n    packages set up: 2/4\n    packages set up: 3/4\n    packages set up: 4/4\n"
	if term.String() != want {
		t.Errorf("terminal:\n%s\nwant:\n%s", term.String(), want)
	}

	// A total given: dpkg announces none.
	term.Reset()
	p = NewPackageProgress(l, 2)
	p.Line("Setting up a (1) ...")
	p.Line("Setting up b (1) ...")
	p.Line("Setting up c (1) ...")
	if term.String() != "    packages set up: 1/2\n    packages set up: 2/2\n" {
		t.Errorf("terminal: %q", term.String())
	}
}

func TestTerminalBar(t *testing.T) {
	var term, file bytes.Buffer
	l := New(&file, "log", &term)
	l.TTY = true
	l.Step("packages")
	l.Progress("packages set up", 1, 4)
	l.Printf("a message")
	l.Progress("packages set up", 2, 4)
	l.Progress("packages set up", 4, 4)
	l.Step("report")
	l.Done()
	out := term.String()
	for _, want := range []string{
		"==> packages\n",
		"    [" + strings.Repeat("#", 6) + strings.Repeat(".", 18) + "] 1/4 packages set up",
		"\r\033[K    a message\n    [######", // the message above the bar, the bar drawn again
		"\r\033[K    packages set up: 4/4 in ",
		"<== packages (",
		"==> report\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q:\n%q", want, out)
		}
	}
	if strings.Contains(file.String(), "[#") || strings.Contains(file.String(), "\033") {
		t.Errorf("a bar in the log file:\n%q", file.String())
	}
}

func TestPlainProgress(t *testing.T) {
	var term bytes.Buffer
	l := New(nil, "", &term)
	for i := 1; i <= 8; i++ {
		l.Progress("fetched", i, 8)
	}
	want := "    fetched: 2/8\n    fetched: 4/8\n    fetched: 6/8\n    fetched: 8/8\n"
	if term.String() != want {
		t.Errorf("off a terminal: %q, want %q", term.String(), want)
	}
}

func TestBarAndDuration(t *testing.T) {
	if b := Bar("x", 5, 10, 2*time.Second); b != "    ["+strings.Repeat("#", 12)+strings.Repeat(".", 12)+"] 5/10 2.5/s x" {
		t.Errorf("Bar = %q", b)
	}
	if b := Bar("x", 0, 10, 0); !strings.Contains(b, "0/10 x") {
		t.Errorf("Bar at zero = %q", b)
	}
	for d, want := range map[time.Duration]string{4200 * time.Millisecond: "4.2s", 65 * time.Second: "1m05s", 62 * time.Minute: "1h02m"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRunBrief: a Brief command line is logged in place of the arguments,
// which still reach the command and, on failure, the error.
func TestRunBrief(t *testing.T) {
	var file bytes.Buffer
	l := New(&file, "build.log", nil)
	args := []string{"-c", `echo "$#"; exit 1`, "sh", "pkg-a", "pkg-b", "pkg-c"}
	err := l.Run(context.Background(), Cmd{Name: "sh", Args: args, Brief: "(3 packages)"})
	var ce *CommandError
	if !errors.As(err, &ce) || strings.Join(ce.Args, " ") != strings.Join(args, " ") {
		t.Fatalf("error %v, want a CommandError with every argument", err)
	}
	f := file.String()
	if !strings.Contains(f, "$ sh (3 packages)\n") || strings.Contains(f, "pkg-a") || !strings.Contains(f, "\n3\n") {
		t.Errorf("log file:\n%s", f)
	}
}
