package qemu

import (
	"strings"
)

// tailLines is how many console lines an error shows.
const tailLines = 40

// maxLine bounds a line that never ends (a guest printing without newlines).
const maxLine = 4096

// cleaner removes terminal escape sequences and control characters from a
// byte stream. It keeps state, so a sequence split across reads is still
// removed whole.
type cleaner struct {
	state int
}

const (
	stNormal = iota
	stEsc    // after ESC
	stCSI    // ESC [ ... until a final byte
	stOSC    // ESC ] ... until BEL or ESC \
	stOSCEsc // ESC inside an OSC
	stCharset
)

// clean returns p without escape sequences; it keeps text, '\t', '\r' and
// '\n'.
func (c *cleaner) clean(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for _, b := range p {
		switch c.state {
		case stNormal:
			switch {
			case b == 0x1b:
				c.state = stEsc
			case b == '\n' || b == '\r' || b == '\t' || (b >= 0x20 && b != 0x7f):
				out = append(out, b)
			}
		case stEsc:
			switch {
			case b == '[':
				c.state = stCSI
			case b == ']' || b == 'P' || b == '_' || b == '^':
				// OSC, DCS, APC, PM: strings ended by ST or BEL.
				c.state = stOSC
			case b == '(' || b == ')' || b == '*' || b == '+' || b == '#':
				c.state = stCharset
			default:
				c.state = stNormal
			}
		case stCSI:
			// Parameter bytes 0x30-0x3f and intermediates 0x20-0x2f
			// continue the sequence; anything else ends it.
			if b < 0x20 || b > 0x3f {
				c.state = stNormal
			}
		case stOSC:
			if b == 0x07 {
				c.state = stNormal
			} else if b == 0x1b {
				c.state = stOSCEsc
			}
		case stOSCEsc:
			if b == '\\' {
				c.state = stNormal
			} else {
				c.state = stOSC
			}
		case stCharset:
			c.state = stNormal
		}
	}
	return out
}

// console turns the guest's output into clean lines and keeps the last ones
// for error messages.
type console struct {
	cl      cleaner
	line    []byte
	cr      bool // a '\r' was seen and not yet followed by anything
	tail    []string
	started bool // any byte at all arrived
}

// write takes raw console output and returns the lines it completed.
func (c *console) write(p []byte) []string {
	if len(p) > 0 {
		c.started = true
	}
	var done []string
	for _, b := range c.cl.clean(p) {
		switch {
		case b == '\n':
			c.cr = false
			done = append(done, c.finish())
		case b == '\r':
			c.cr = true
		default:
			if c.cr {
				// A bare carriage return: the terminal would overwrite the
				// line, so its old text is gone.
				c.line = c.line[:0]
				c.cr = false
			}
			if len(c.line) >= maxLine {
				done = append(done, c.finish())
			}
			c.line = append(c.line, b)
		}
	}
	return done
}

func (c *console) finish() string {
	l := strings.TrimRight(string(c.line), " \t")
	c.line = c.line[:0]
	c.tail = append(c.tail, l)
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	return l
}

// partial is the line being written, typically a prompt waiting for input.
func (c *console) partial() string {
	return string(c.line)
}

// last formats the last lines (the partial one included) for an error
// message.
func (c *console) last() string {
	lines := c.tail
	if p := strings.TrimSpace(c.partial()); p != "" {
		lines = append(lines[:len(lines):len(lines)], p)
		if len(lines) > tailLines {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return "(no console output)"
	}
	return "    " + strings.Join(lines, "\n    ")
}
