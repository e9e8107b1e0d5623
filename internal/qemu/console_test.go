package qemu

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestCleanerStripsEscapes(t *testing.T) {
	// Real OVMF and bash output, plus an OSC title and a charset switch.
	in := "\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: loading\r\n" +
		"\x1b[1m\x1b[33m\x1b[40mMapping table\x1b[0m\r\n" +
		"\x1b]0;root@debian: ~\x07\x1b[?2004hroot@debian:~# \x1b(Bok\x00\x08\x7f"
	var c cleaner
	got := string(c.clean([]byte(in)))
	want := "BdsDxe: loading\r\nMapping table\r\nroot@debian:~# ok"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCleanerSplitSequences(t *testing.T) {
	in := "a\x1b[01;01Hb\x1b]2;title\x1b\\c\x1b[?2004hd"
	// Every way of cutting the stream in two gives the same text.
	for i := range len(in) + 1 {
		var c cleaner
		got := string(c.clean([]byte(in[:i]))) + string(c.clean([]byte(in[i:])))
		if got != "abcd" {
			t.Errorf("split at %d: got %q", i, got)
		}
	}
}

func TestConsoleLines(t *testing.T) {
	var c console
	var lines []string
	for _, chunk := range []string{"Booting", " the kernel\r", "\n[  OK  ] Started\r\n", "progress 10%\rprogress 99%\r\n", "deb", "ian lo", "\x1b[1", "mgin: "} {
		lines = append(lines, c.write([]byte(chunk))...)
	}
	want := []string{"Booting the kernel", "[  OK  ] Started", "progress 99%"}
	if !slices.Equal(lines, want) {
		t.Errorf("lines: got %q, want %q", lines, want)
	}
	if p := c.partial(); p != "debian login: " {
		t.Errorf("partial: got %q", p)
	}
	last := c.last()
	if !strings.Contains(last, "    Booting the kernel\n") || !strings.HasSuffix(last, "    debian login:") {
		t.Errorf("last: got %q", last)
	}
}

func TestConsoleTailBounded(t *testing.T) {
	var c console
	for i := range 100 {
		c.write([]byte(strings.Repeat("x", i) + "\n"))
	}
	if len(c.tail) != tailLines {
		t.Fatalf("kept %d lines, want %d", len(c.tail), tailLines)
	}
	if c.tail[tailLines-1] != strings.Repeat("x", 99) {
		t.Errorf("last kept line is not the newest")
	}
	c.write([]byte(strings.Repeat("y", 3*maxLine)))
	if len(c.partial()) > maxLine {
		t.Errorf("an endless line grew to %d bytes", len(c.partial()))
	}
	var empty console
	if empty.last() != "(no console output)" {
		t.Errorf("empty console: %q", empty.last())
	}
}

func TestExpectAcrossReads(t *testing.T) {
	s := &session{expect: regexp.MustCompile(DefaultExpect)}
	var c console
	feed := func(chunk string) {
		for _, l := range c.write([]byte(chunk)) {
			if _, err := s.line(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	feed("Last login: Mon")
	// Only the quiet-period check sees an unfinished line; the login
	// message is still being sent here, so nothing may match yet.
	feed(" Jan  1 on ttyS0\r\n")
	feed("\r\nDebian GNU/Linux 13 debian ttyS0\r\n\r\ndebian lo")
	if s.stage != waitExpect {
		t.Fatal("matched too early")
	}
	feed("gin\x1b[0m: ")
	if _, err := s.prompt(c.partial()); err != nil || s.stage != finished || s.matched != "debian login:" {
		t.Errorf("after the prompt: stage %v, matched %q, err %v", s.stage, s.matched, err)
	}

	// A marker on a complete line matches at once, anywhere in the line.
	s = &session{expect: regexp.MustCompile(`VMDEB-READY`)}
	if _, err := s.line("[   3.1] vmdeb: VMDEB-READY 42"); err != nil || s.stage != finished {
		t.Errorf("marker line: stage %v, err %v", s.stage, err)
	}
}

func TestDefaultExpect(t *testing.T) {
	re := regexp.MustCompile(DefaultExpect)
	for _, l := range []string{"debian login:", "debian login: ", "debian-vm login: [  116.990123] powernow_k8: Found 1 processor"} {
		if !re.MatchString(l) {
			t.Errorf("%q is a login prompt", l)
		}
	}
	for _, l := range []string{"Last login: Mon Nov 26", "login: failed for user", "[  OK  ] Started getty@tty1.service - Getty on tty1."} {
		if re.MatchString(l) {
			t.Errorf("%q is not a login prompt", l)
		}
	}
}
