package buildervm

import (
	"path/filepath"
	"sort"
	"strings"
)

// PlanShares orders the shares so that a parent is mounted before what
// lies under it, and drops those another share already provides (the
// same host directory under a share that is writable, or as read-only
// as it).
func PlanShares(in []Share) []Share {
	var l []Share
	for _, s := range in {
		s.Host, s.Guest = filepath.Clean(s.Host), filepath.Clean(s.Guest)
		l = append(l, s)
	}
	depth := func(p string) int { return strings.Count(p, "/") }
	sort.SliceStable(l, func(i, j int) bool {
		if di, dj := depth(l[i].Guest), depth(l[j].Guest); di != dj {
			return di < dj
		}
		if l[i].Guest != l[j].Guest {
			return l[i].Guest < l[j].Guest
		}
		return !l[i].ReadOnly && l[j].ReadOnly // rw first: it wins a tie
	})
	var out []Share
	for _, s := range l {
		covered := false
		for _, p := range out {
			rel, ok := within(p.Guest, s.Guest)
			if ok && filepath.Join(p.Host, rel) == s.Host && (!p.ReadOnly || s.ReadOnly) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// within reports whether p is dir or below it, and p relative to dir.
func within(dir, p string) (string, bool) {
	if dir == p {
		return ".", true
	}
	if dir == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if strings.HasPrefix(p, dir+"/") {
		return p[len(dir)+1:], true
	}
	return "", false
}
