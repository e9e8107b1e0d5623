package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/archive"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/chroot"
	"vmdeb/internal/report"
	"vmdeb/internal/squashfs"
	"vmdeb/internal/stagecache"
)

// Version is vmdeb's version, set by the command. With the checksum of
// the running binary it is part of every stage cache key: another vmdeb
// never reuses this one's stages.
var Version = "dev"

var selfSum = sync.OnceValue(func() string {
	exe, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	s, _, err := archive.HashFile(exe)
	if err != nil {
		return "unknown"
	}
	return s
})

// AutoPruneSize bounds the stage cache after each build: the least
// recently used entries go first. The squashfs block cache in it has a
// bound of its own, the same (trimBlockCache).
const AutoPruneSize = 20 << 30

// trimBlockCache bounds the squashfs block cache after a build that made
// a squashfs through it, as saveToCache bounds the stage entries: without
// it every rebuild with changed files would add blocks until the disk is
// full. The least recently used blocks go first (a block's date is when a
// build last took it, to the hour). A block another build of a set is
// about to take, if removed, is compressed again: the image is the same.
func trimBlockCache(st *State, limit int64) {
	if st.BlockCache == "" {
		return
	}
	used := false
	for _, b := range st.Blocks {
		used = used || b.Used
	}
	if !used {
		return
	}
	c := squashfs.Cache{Dir: st.BlockCache}
	n, freed, err := c.Prune(0, limit)
	if err != nil {
		st.Log.Printf("squashfs block cache: not trimmed: %v", err)
		return
	}
	if n > 0 {
		st.Log.Printf("squashfs block cache: removed %d least recently used blocks, %s (over %s)", n, bytesize.Format(freed), bytesize.Format(limit))
	}
}

// cached is a stage whose result the stage cache keeps: the root file
// system as the stage leaves it. The runner restores the deepest cached
// stage it finds and runs only the stages after it.
type cached interface {
	// CacheInputs is what the stage's result depends on besides the
	// stages before it, whose keys are chained into its own.
	CacheInputs(p *Plan) stagecache.Inputs
}

// cachePoint is a stage after which the root file system is kept.
type cachePoint struct {
	index  int // in the build's stage list
	stage  string
	key    string
	parent string
	inputs stagecache.Inputs
	shared bool // other images reuse it (the stage is shared)
}

// cachePoints are the cached stages of a build, in order, each keyed by
// its inputs and the key of the cached stage before it.
func cachePoints(p *Plan, stages []Stage) []cachePoint {
	var pts []cachePoint
	parent := ""
	for i, s := range stages {
		c, ok := s.(cached)
		if !ok {
			continue
		}
		in := c.CacheInputs(p)
		key := stagecache.Key(parent, in)
		_, sh := s.(shared)
		pts = append(pts, cachePoint{index: i, stage: s.Name(), key: key, parent: parent, inputs: in, shared: sh})
		parent = key
	}
	return pts
}

// CacheInputs of the bootstrap: the suite, architecture, mirror,
// components, variant, backend and the host files it runs, keyring,
// emulator, the suite's Release file and vmdeb itself. The stages after
// packages (users, the hook, finalise, the outputs) are not cached: they
// take seconds, and a hook may read anything.
func (bootstrapStage) CacheInputs(p *Plan) stagecache.Inputs {
	s := p.Spec
	var base stagecache.Inputs
	base.Add("vmdeb", Version+" "+selfSum())
	base.Add("suite", s.Suite)
	base.Add("architecture", p.Arch.Name)
	base.Add("mirror", p.Mirror)
	base.Add("components", strings.Join(s.Components, " "))
	base.Add("variant", string(s.Variant))
	base.Add("bootstrap", p.Bootstrap.Name())
	base.Add("insecure", fmt.Sprint(s.Insecure))
	base.Add("release", p.ReleaseDigest)
	if s.Keyring != "" {
		base.AddFile("keyring", s.Path(s.Keyring))
	}
	for _, f := range p.Bootstrap.HostFiles() {
		base.AddFile(f.Name, f.Path)
	}
	if p.Interpreter != "" {
		base.Add("binfmt-handler", p.InterpreterAt)
		base.AddFile("binfmt-handler-binary", p.Interpreter)
	}
	return base
}

// CacheInputs of the packages: the package list, the local .deb files'
// content, the debconf answers and SOURCE_DATE_EPOCH (on top of the
// bootstrap's key).
func (packagesStage) CacheInputs(p *Plan) stagecache.Inputs {
	var pk stagecache.Inputs
	pk.Add("packages", strings.Join(p.Packages, " "))
	for _, d := range p.Spec.CustomPackages {
		pk.AddFile("custom-packages "+d, p.Spec.Path(d))
	}
	addInstallInputs(&pk, p)
	return pk
}

// addInstallInputs adds what an apt install in the chroot depends on
// besides its package list: SOURCE_DATE_EPOCH and the debconf answers.
func addInstallInputs(in *stagecache.Inputs, p *Plan) {
	in.Add("source-date-epoch", fmt.Sprint(p.SourceDateEpoch))
	// Only when given, so that the keys of configs without answers stay
	// what they were.
	if len(p.Spec.Debconf) > 0 {
		in.Add("debconf", strings.Join(p.Spec.Debconf, "\n"))
	}
}

// CacheInputs of common-packages: its package list, the debconf answers
// and SOURCE_DATE_EPOCH (on top of the bootstrap's key), and nothing of
// the image's own packages: every image with the same base system and
// common-packages has the same key.
func (commonPackagesStage) CacheInputs(p *Plan) stagecache.Inputs {
	var in stagecache.Inputs
	in.Add("common-packages", strings.Join(p.Spec.CommonPackages, " "))
	addInstallInputs(&in, p)
	return in
}

// cacheExclude are left out of stored stages: downloaded packages, which
// finalise's apt-get clean removes from every image anyway.
var cacheExclude = []string{"./var/cache/apt/archives/*.deb", "./var/cache/apt/archives/partial/*"}

// restoreFromCache puts the deepest cached stage in place and returns the
// index of the first stage still to run (0: nothing reused). It says for
// each cached stage whether it was reused and, if not, why.
func restoreFromCache(ctx context.Context, st *State, c *stagecache.Cache, points []cachePoint) (int, error) {
	log, name := st.Log, st.Plan.Spec.Name
	hit := -1
	for j := len(points) - 1; j >= 0 && hit < 0; j-- {
		e, ok := c.Lookup(points[j].key)
		if !ok {
			continue
		}
		log.Step("restore")
		t := time.Now()
		err := c.Restore(ctx, e, st.Rootfs)
		if err == nil {
			log.Printf("stage cache: %s restored from %s (saved %s, %s) in %.1fs", points[j].stage, e.Dir(),
				e.Created.Local().Format("2006-01-02 15:04"), bytesize.Format(e.Size), time.Since(t).Seconds())
			hit = j
			break
		}
		if ctx.Err() != nil {
			return 0, err
		}
		log.Printf("stage cache: %s not usable: %v", points[j].stage, err)
		if err := emptyDir(st.Rootfs); err != nil {
			return 0, err
		}
	}
	for j, pt := range points {
		switch {
		case j <= hit:
			log.Printf("stage cache: %-9s reused (key %s)", pt.stage, pt.key[:12])
			st.Cache = append(st.Cache, report.CacheResult{Stage: pt.stage, Key: pt.key, Action: report.CacheRestored})
		default:
			why := whyRebuilt(c, name, pt, j == hit+1)
			log.Printf("stage cache: %-9s rebuilt: %s", pt.stage, why)
			st.Cache = append(st.Cache, report.CacheResult{Stage: pt.stage, Key: pt.key, Action: report.CacheNotReached, Reason: why})
		}
	}
	if hit < 0 {
		return 0, nil
	}
	return points[hit].index + 1, nil
}

// whyRebuilt compares a stage's inputs with those of the config's latest
// entry for it.
func whyRebuilt(c *stagecache.Cache, config string, pt cachePoint, first bool) string {
	if !first {
		return "a stage before it is rebuilt"
	}
	e := c.Latest(config, pt.stage)
	if e == nil {
		return "no earlier build of " + config + " in the cache"
	}
	if e.Parent != pt.parent {
		return "a stage before it changed"
	}
	if ch := stagecache.Changed(e.Inputs, pt.inputs); len(ch) > 0 {
		return "changed since the last cached build: " + strings.Join(ch, ", ")
	}
	return "its cache entry was unusable"
}

// saveToCache stores the root file system after a cached stage. The
// chroot must be down (the runner takes it down first), so that the entry
// holds the tree alone: no mounts, the image's own sources and
// resolv.conf. A failure to store is reported and the build goes on.
func saveToCache(ctx context.Context, st *State, c *stagecache.Cache, pt cachePoint) error {
	t := time.Now()
	e := &stagecache.Entry{Key: pt.key, Config: st.Plan.Spec.Name, Stage: pt.stage, Parent: pt.parent, Inputs: pt.inputs}
	st.Log.Printf("stage cache: saving %s", pt.stage)
	if err := c.Save(ctx, e, st.Rootfs, cacheExclude); err != nil {
		if ctx.Err() != nil {
			return err
		}
		st.Log.Printf("stage cache: %s not saved: %v", pt.stage, err)
		st.cacheAction(pt.stage, report.CacheNotSaved, err.Error())
		return nil
	}
	st.cacheAction(pt.stage, report.CacheSaved, "")
	st.Log.Printf("stage cache: %s saved (%s, %.1fs)", pt.stage, bytesize.Format(e.Size), time.Since(t).Seconds())
	if removed, err := c.Prune(0, AutoPruneSize); err == nil && len(removed) > 0 {
		st.Log.Printf("stage cache: removed %d least recently used entries (over %s)", len(removed), bytesize.Format(AutoPruneSize))
	}
	return nil
}

// cacheAction records what became of a cached stage that ran; the reason
// it was rebuilt is kept unless a failure to save replaces it.
func (st *State) cacheAction(stage, action, reason string) {
	for i := range st.Cache {
		if st.Cache[i].Stage == stage {
			st.Cache[i].Action = action
			if reason != "" {
				st.Cache[i].Reason = reason
			}
			return
		}
	}
	st.Cache = append(st.Cache, report.CacheResult{Stage: stage, Action: action, Reason: reason})
}

// emptyDir removes everything in dir, keeping dir.
func emptyDir(dir string) error {
	if err := chroot.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}
