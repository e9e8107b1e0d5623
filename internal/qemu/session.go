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
	waitMenu // booting until the boot menu shows, to choose an entry
)

// menuPrompt is the countdown line of the boot menus vmdeb writes:
// ISOLINUX's "Automatic boot in 5 seconds..." and GRUB's "The
// highlighted entry will be executed automatically in 5s."
var menuPrompt = regexp.MustCompile(`(?i)automatic boot in|executed automatically in`)

// MenuKeys is what is typed on a serial console to boot the menu entry
// entry places below the highlighted one: Ctrl-N (next entry) in both
// ISOLINUX's menu and GRUB, then Enter. Not the cursor key's ESC [ B:
// GRUB can read its ESC alone, which leaves the menu.
func MenuKeys(entry int) string {
	return strings.Repeat("\x0e", entry) + "\r"
}

// EditKeys boot the entry as MenuKeys does with extra appended to its
// kernel command line: ISOLINUX's Tab opens the command line for editing
// (Enter boots it); GRUB's "e" opens the entry, whose first line is the
// linux line in the menus vmdeb writes, Ctrl-E goes to its end and
// Ctrl-X boots.
func EditKeys(entry int, extra string, grub bool) string {
	next := strings.Repeat("\x0e", entry)
	if grub {
		return next + "e\x05 " + extra + "\x18"
	}
	return next + "\t " + extra + "\r"
}

// session is the conversation with the guest's console: it sees clean
// console lines and answers with what to type. It does no I/O, so its
// logic is tested without a VM.
type session struct {
	expect               *regexp.Regexp
	menuKeys             string // typed once the boot menu shows (stage waitMenu)
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
	case waitMenu:
		return s.menu(l), nil
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
	case waitMenu:
		return s.menu(p), nil
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

// menu types the menu keys once the boot menu's countdown shows.
func (s *session) menu(l string) string {
	if !menuPrompt.MatchString(l) {
		return ""
	}
	s.stage = waitExpect
	return s.menuKeys
}

// booting reports whether the guest has not yet shown what was expected.
func (s *session) booting() bool { return s.stage == waitExpect || s.stage == waitMenu }

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
	case waitMenu:
		return fmt.Sprintf("the boot menu (%q) to choose an entry", menuPrompt.String())
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
