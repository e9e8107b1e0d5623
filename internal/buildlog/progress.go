package buildlog

import (
	"regexp"
	"strconv"
	"strings"
)

// PackageProgress turns apt's and dpkg's output into progress counters:
// apt's "N newly installed" gives the total (unless one was given), its
// "Get:N" lines show which download it waits for (a slow mirror shows as
// a counter that stops, not as silence), and the "Setting up" lines
// count the packages configured. Pass its Line to Cmd.Line.
type PackageProgress struct {
	log         *Log
	total, done int
}

// NewPackageProgress returns a counter of total packages (0: the number
// apt announces).
func NewPackageProgress(log *Log, total int) *PackageProgress {
	return &PackageProgress{log: log, total: total}
}

var (
	newlyRE = regexp.MustCompile(`(\d+) newly installed`)
	getRE   = regexp.MustCompile(`^Get:(\d+) `)
)

// Line reads one line of output.
func (p *PackageProgress) Line(line string) {
	if m := newlyRE.FindStringSubmatch(line); m != nil && p.total == 0 {
		p.total, _ = strconv.Atoi(m[1])
	}
	if m := getRE.FindStringSubmatch(line); m != nil {
		n, _ := strconv.Atoi(m[1])
		p.log.Progress("downloading", min(n, p.total), p.total)
	}
	if strings.HasPrefix(line, "Setting up ") && p.done < p.total {
		p.done++
		p.log.Progress("packages set up", p.done, p.total)
	}
}
