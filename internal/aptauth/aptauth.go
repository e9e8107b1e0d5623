// Package aptauth keeps mirror credentials the way apt does (apt_auth.conf(5)):
// entries of "machine HOST[:PORT][/PATH] login USER password PASS", never in a
// URL that is written into an image's sources, a log or a message.
package aptauth

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"strings"
)

// Entry is one machine's credentials.
type Entry struct {
	// Machine is HOST[:PORT][/PATH], optionally with a scheme (https://…),
	// as apt_auth.conf(5) writes it.
	Machine         string
	Login, Password string
}

// Set is the credentials of a build, in order: the first match wins.
type Set []Entry

// Parse reads an auth.conf file's text; file names it in errors, which
// carry the line number and never the password.
func Parse(data []byte, file string) (Set, error) {
	var set Set
	var toks []struct {
		s    string
		line int
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Fields(line) {
			toks = append(toks, struct {
				s    string
				line int
			}{f, n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var cur *Entry
	for i := 0; i < len(toks); i++ {
		key, line := toks[i].s, toks[i].line
		if i+1 >= len(toks) {
			return nil, fmt.Errorf("%s:%d: %q without a value (expected: machine HOST login USER password PASS)", file, line, key)
		}
		val := toks[i+1].s
		i++
		switch key {
		case "machine":
			set = append(set, Entry{Machine: val})
			cur = &set[len(set)-1]
		case "login", "password":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: %s before any machine (expected: machine HOST login USER password PASS)", file, line, key)
			}
			if key == "login" {
				cur.Login = val
			} else {
				cur.Password = val
			}
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %q (valid: machine, login, password)", file, line, key)
		}
	}
	for _, e := range set {
		if e.Login == "" {
			return nil, fmt.Errorf("%s: machine %s has no login", file, e.Machine)
		}
	}
	return set, nil
}

// Format writes the set as an auth.conf file for apt.
func (s Set) Format() []byte {
	var b bytes.Buffer
	for _, e := range s {
		fmt.Fprintf(&b, "machine %s login %s password %s\n", e.Machine, e.Login, e.Password)
	}
	return b.Bytes()
}

// Split takes the user and password out of a URL: the URL without them,
// and their entry (machine: scheme://host[:port]/path, which apt also
// matches for plain http), if it had any. A string that does not parse as
// a URL is returned as it is.
func Split(raw string) (string, *Entry) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw, nil
	}
	e := &Entry{Machine: u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/"), Login: u.User.Username()}
	e.Password, _ = u.User.Password()
	u.User = nil
	return u.String(), e
}

// Lookup finds the credentials for a URL as apt matches them: the host
// (and port) equal, the entry's path a prefix of the URL's, and a scheme,
// when the entry names one, equal; an entry without a scheme is used for
// https only (apt's rule since 1.9.9).
func (s Set) Lookup(raw string) *Entry {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	for i := range s {
		m := s[i].Machine
		scheme := ""
		if a, b, ok := strings.Cut(m, "://"); ok {
			scheme, m = a, b
		}
		host, path, _ := strings.Cut(m, "/")
		if !strings.EqualFold(host, u.Host) {
			continue
		}
		if scheme != "" && scheme != u.Scheme {
			continue
		}
		if scheme == "" && u.Scheme != "https" {
			continue
		}
		if path != "" && !strings.HasPrefix(strings.TrimPrefix(u.EscapedPath(), "/"), path) {
			continue
		}
		return &s[i]
	}
	return nil
}
