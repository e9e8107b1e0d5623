package qemu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The markers around a Run command's output. The command line sends them
// with quotes inside (VMDEB-BEG""IN) so the terminal's echo of the typed
// line never looks like the marker itself.
const (
	beginMarker  = "VMDEB-BEGIN"
	statusMarker = "VMDEB-STATUS="
)

var (
	passwordPrompt = regexp.MustCompile(`(?i)password:\s*$`)
	shellPrompt    = regexp.MustCompile(`[#$]\s*$`)
	statusLine     = regexp.MustCompile(`^(.*)` + statusMarker + `(\d+)$`)
)

type stage int

const (
	waitExpect   stage = iota // booting until Expect matches
	waitPassword              // login name sent
	waitShell                 // password sent
	waitOutput                // command sent
	finished
)

// session is the conversation with the guest's console: it sees clean
// console lines and answers with what to type. It does no I/O, so its
// logic is tested without a VM.
type session struct {
	expect               *regexp.Regexp
	run, login, password string
	stage                stage
	matched              string
	capturing            bool
	output               []string
	status               int
}

// line handles a complete console line.
func (s *session) line(l string) (send string, err error) {
	switch s.stage {
	case waitExpect:
		if s.expect.MatchString(l) {
			return s.match(l), nil
		}
	case waitPassword, waitShell:
		if strings.Contains(l, "Login incorrect") {
			return "", fmt.Errorf("logging in as %q failed: %s", s.login, strings.TrimSpace(l))
		}
	case waitOutput:
		if !s.capturing {
			s.capturing = l == beginMarker
			return "", nil
		}
		if m := statusLine.FindStringSubmatch(l); m != nil {
			if m[1] != "" {
				s.output = append(s.output, m[1])
			}
			s.status, err = strconv.Atoi(m[2])
			if err != nil {
				return "", fmt.Errorf("bad status line %q", l)
			}
			s.stage = finished
			return "", nil
		}
		s.output = append(s.output, l)
	}
	return "", nil
}

// prompt handles an unfinished line after the guest has gone quiet: a
// prompt waiting for input. Prompts are matched only then, so a line that
// is merely half transmitted cannot pass for one.
func (s *session) prompt(p string) (send string, err error) {
	switch s.stage {
	case waitExpect:
		if s.expect.MatchString(p) {
			return s.match(p), nil
		}
	case waitPassword:
		if passwordPrompt.MatchString(p) {
			s.stage = waitShell
			return s.password + "\n", nil
		}
		if shellPrompt.MatchString(p) { // an account without a password
			return s.command(), nil
		}
	case waitShell:
		if shellPrompt.MatchString(p) {
			return s.command(), nil
		}
	}
	return "", nil
}

func (s *session) match(l string) string {
	s.matched = strings.TrimSpace(l)
	if s.run == "" {
		s.stage = finished
		return ""
	}
	s.stage = waitPassword
	return s.login + "\n"
}

func (s *session) command() string {
	s.stage = waitOutput
	// A subshell keeps an `exit` in the command from ending the login;
	// stdin from /dev/null keeps it from eating what is typed later.
	return "echo VMDEB-BEG\"\"IN; (\n" + s.run + "\n) </dev/null; echo VMDEB-STA\"\"TUS=$?\n"
}

// runOutput is the command's output, one line per console line.
func (s *session) runOutput() string {
	return strings.Join(s.output, "\n")
}

// waiting says what the session waits for, for a timeout message.
func (s *session) waiting() string {
	switch s.stage {
	case waitExpect:
		return fmt.Sprintf("console output matching %q", s.expect.String())
	case waitPassword:
		return fmt.Sprintf("a password prompt after logging in as %q", s.login)
	case waitShell:
		return fmt.Sprintf("a shell prompt after logging in as %q", s.login)
	case waitOutput:
		if s.capturing {
			return fmt.Sprintf("the end of the output of %q", s.run)
		}
		return fmt.Sprintf("the start of the output of %q", s.run)
	}
	return "nothing"
}
