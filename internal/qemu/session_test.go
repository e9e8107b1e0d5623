package qemu

import (
	"regexp"
	"strings"
	"testing"
)

// converse drives a session with a scripted guest: each step is console
// output, and what the session types back is checked.
type step struct {
	out  string // console output
	want string // what the session should type in answer ("" = nothing)
}

func converse(t *testing.T, s *session, steps []step) {
	t.Helper()
	var c console
	for i, st := range steps {
		var typed []string
		for _, l := range c.write([]byte(st.out)) {
			send, err := s.line(l)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			typed = append(typed, send)
		}
		if p := c.partial(); p != "" {
			send, err := s.prompt(p)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			typed = append(typed, send)
		}
		if got := strings.Join(typed, ""); got != st.want {
			t.Fatalf("step %d (%q): typed %q, want %q", i, st.out, got, st.want)
		}
	}
}

func newRunSession(cmd string) *session {
	return &session{expect: regexp.MustCompile(DefaultExpect), run: cmd, login: "user", password: "live"}
}

func TestSessionRun(t *testing.T) {
	s := newRunSession("ls /nonexistent; printf tail")
	cmd := "echo VMDEB-BEG\"\"IN; (\nls /nonexistent; printf tail\n) </dev/null; echo VMDEB-STA\"\"TUS=$?\n"
	converse(t, s, []step{
		{"[  OK  ] Reached target multi-user.target\r\n", ""},
		{"\r\nDebian GNU/Linux 13 debian ttyS0\r\n\r\ndebian login: ", "user\n"},
		{"user\r\n", ""},
		{"Password: ", "live\n"},
		{"\r\nLinux debian 6.12.0 #1 SMP x86_64\r\n\r\nThe programs included with the Debian GNU/Linux system are free software;\r\n", ""},
		{"\x1b[?2004h\x1b]0;user@debian: ~\x07user@debian:~$ ", cmd},
		// The terminal echoes the typed command, markers included.
		{"echo VMDEB-BEG\"\"IN; (\r\n> ls /nonexistent; printf tail\r\n> ) </dev/null; echo VMDEB-STA\"\"TUS=$?\r\n\x1b[?2004l\r", ""},
		{"VMDEB-BEGIN\r\nls: cannot access '/nonexistent': No such file or directory\r\n", ""},
		{"tailVMDEB-STATUS=2\r\n", ""},
	})
	if s.stage != finished {
		t.Fatalf("not finished: waiting for %s", s.waiting())
	}
	want := "ls: cannot access '/nonexistent': No such file or directory\ntail"
	if s.runOutput() != want || s.status != 2 {
		t.Errorf("got output %q status %d; want %q status 2", s.runOutput(), s.status, want)
	}
}

func TestSessionNoPassword(t *testing.T) {
	s := newRunSession("true")
	cmd := newRunSession("true").command()
	converse(t, s, []step{
		{"debian login: ", "user\n"},
		{"user\r\nroot@debian:~# ", cmd},
	})
	if s.stage != waitOutput {
		t.Errorf("stage %v, want waitOutput", s.stage)
	}
}

func TestSessionLoginIncorrect(t *testing.T) {
	s := newRunSession("true")
	converse(t, s, []step{
		{"debian login: ", "user\n"},
		{"Password: ", "live\n"},
	})
	var c console
	l := c.write([]byte("\r\nLogin incorrect\r\n"))
	var err error
	for _, x := range l {
		if _, e := s.line(x); e != nil {
			err = e
		}
	}
	if err == nil || !strings.Contains(err.Error(), "Login incorrect") || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("got %v, want a login failure naming the user", err)
	}
}

func TestSessionWaiting(t *testing.T) {
	s := newRunSession("uname -a")
	if w := s.waiting(); !strings.Contains(w, "login:") {
		t.Errorf("waiting: %q", w)
	}
	s.stage = waitOutput
	if w := s.waiting(); !strings.Contains(w, "uname -a") {
		t.Errorf("waiting: %q", w)
	}
}

// TestSessionMenuEntry: the keys go out once, when the menu's countdown
// shows, and only then is Expect looked for.
func TestSessionMenuEntry(t *testing.T) {
	s := &session{expect: regexp.MustCompile(`Choose language|Select a language`), stage: waitMenu, menuKeys: MenuKeys(2)}
	converse(t, s, []step{
		{"ISOLINUX 6.04 Choose language\r\n", ""}, // before the menu: not yet
		{"\x1b[2J\x1b[1;1H  Debian live\x1b[5;3HInstall\x1b[20;1HAutomatic boot in 5 seconds...", "\x0e\x0e\r"},
		{"\x1b[20;1HAutomatic boot in 4 seconds...\r\n", ""},
		{"\x1b[1;1H[!!] Select a language\r\n", ""},
	})
	if s.stage != finished || s.matched != "[!!] Select a language" {
		t.Errorf("stage %d, matched %q", s.stage, s.matched)
	}
	g := &session{expect: regexp.MustCompile(`x`), stage: waitMenu, menuKeys: MenuKeys(1)}
	converse(t, g, []step{{"   The highlighted entry will be executed automatically in 5s.\r\n", "\x0e\r"}})
	if !strings.Contains(g.waiting(), "console output") {
		t.Errorf("after the menu it waits for %s", g.waiting())
	}
	if w := (&session{stage: waitMenu}).waiting(); !strings.Contains(w, "boot menu") {
		t.Errorf("waiting() = %q", w)
	}
	if MenuKeys(0) != "\r" {
		t.Errorf("MenuKeys(0) = %q", MenuKeys(0))
	}
}

func TestEditKeys(t *testing.T) {
	if got := EditKeys(2, "auto=true priority=critical", false); got != "\x0e\x0e\t auto=true priority=critical\r" {
		t.Errorf("ISOLINUX: %q", got)
	}
	if got := EditKeys(1, "a=b", true); got != "\x0ee\x05 a=b\x18" {
		t.Errorf("GRUB: %q", got)
	}
}
