package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"vmdeb/internal/build"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/squashfs"
	"vmdeb/internal/stagecache"
)

// cacheFlags choose the stage cache: --no-cache, --stage-cache DIR, the
// VMDEB_STAGE_CACHE environment variable, or the default directory.
type cacheFlags struct {
	off  bool
	path string
}

// dir is the cache directory, "" when the cache is off.
func (f cacheFlags) dir() (string, error) {
	if f.off {
		return "", nil
	}
	d := f.path
	if d == "" {
		d = os.Getenv("VMDEB_STAGE_CACHE")
	}
	switch d {
	case "":
		if os.Geteuid() != 0 {
			return config.UserCacheDir("stages"), nil
		}
		return stagecache.DefaultDir, nil
	case "off":
		return "", nil
	}
	if fi, err := os.Stat(d); err == nil && !fi.IsDir() {
		return "", &usageError{fmt.Errorf("stage cache %s: not a directory (--stage-cache or VMDEB_STAGE_CACHE)", d)}
	}
	return d, nil
}

// open opens the cache (nil when off).
func (f cacheFlags) open() (*stagecache.Cache, error) {
	d, err := f.dir()
	if err != nil || d == "" {
		return nil, err
	}
	return stagecache.Open(d)
}

// args passes the choice on to the namespaced build process.
func (f cacheFlags) args() []string {
	d, _ := f.dir()
	if d == "" {
		return []string{"--no-cache"}
	}
	return []string{"--stage-cache", d}
}

func cacheCmd() *cobra.Command {
	var cf cacheFlags
	c := &cobra.Command{
		Use:   "cache",
		Short: "List or prune the stage cache (kept root file systems that later builds start from) and the builder VM images",
	}
	c.PersistentFlags().StringVar(&cf.path, "stage-cache", "", "stage cache directory (default $VMDEB_STAGE_CACHE or "+stagecache.DefaultDir+")")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the cached stages, most recently used first",
		Args:  args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := openExisting(cf)
			if err != nil || cache == nil {
				return err
			}
			l, err := cache.List()
			if err != nil {
				return err
			}
			var total int64
			fmt.Printf("%-12s %-24s %-15s %10s  %-16s  %s\n", "KEY", "CONFIG", "STAGE", "SIZE", "LAST USED", "CREATED")
			for _, e := range l {
				fmt.Printf("%-12s %-24s %-15s %10s  %-16s  %s\n", e.Key[:12], e.Config, e.Stage, bytesize.Format(e.Size),
					e.LastUsed().Local().Format("2006-01-02 15:04"), e.Created.Local().Format("2006-01-02 15:04"))
				total += e.Size
			}
			fmt.Printf("%d entries, %s in %s\n", len(l), bytesize.Format(total), cache.Dir)
			return nil
		},
	}
	var olderThan time.Duration
	var maxSize string
	var all bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove entries unused for longer than --older-than, then the least recently used beyond --max-size",
		Args:  args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var limit int64
			if maxSize != "" {
				n, err := config.ParseSize(maxSize)
				if err != nil {
					return &usageError{fmt.Errorf("--max-size %q: %v (e.g. 10G, 500M)", maxSize, err)}
				}
				limit = n
			}
			if all {
				olderThan, limit = 0, 1 // nothing fits in one byte
			}
			if olderThan < 0 {
				return &usageError{errors.New("--older-than must not be negative")}
			}
			cache, err := openExisting(cf)
			if err != nil || cache == nil {
				return err
			}
			removed, err := cache.Prune(olderThan, limit)
			var freed int64
			for _, e := range removed {
				freed += e.Size
				fmt.Printf("removed %s %s %s (%s)\n", e.Key[:12], e.Config, e.Stage, bytesize.Format(e.Size))
			}
			fmt.Printf("%d entries removed, %s freed\n", len(removed), bytesize.Format(freed))
			blocks := squashfs.Cache{Dir: build.BlockCacheDir(cache.Dir)}
			n, bfreed, berr := blocks.Prune(olderThan, limit)
			fmt.Printf("squashfs block cache: %d blocks removed, %s freed\n", n, bytesize.Format(bfreed))
			return errors.Join(err, berr)
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 30*24*time.Hour, "remove entries not used for this long (0: no age limit)")
	prune.Flags().StringVar(&maxSize, "max-size", "", "then keep at most this much, most recently used first (e.g. 10G; the stage entries and the squashfs block cache each)")
	prune.Flags().BoolVar(&all, "all", false, "remove every entry")
	c.AddCommand(list, prune, builderCacheCmd())
	return c
}

// openExisting opens the cache directory without creating it; nil when it
// does not exist yet.
func openExisting(cf cacheFlags) (*stagecache.Cache, error) {
	d, err := cf.dir()
	if err != nil {
		return nil, err
	}
	if d == "" {
		return nil, &usageError{errors.New("the stage cache is off (VMDEB_STAGE_CACHE=off); name one with --stage-cache")}
	}
	if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
		fmt.Printf("no stage cache at %s\n", d)
		return nil, nil
	}
	return stagecache.Open(d)
}
