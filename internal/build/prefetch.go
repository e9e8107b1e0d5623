package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/imgroot"
	"vmdeb/internal/report"
)

// Packages fetched several at a time. apt fetches the packages of an
// install one after another over one connection per mirror; for the
// hundreds of packages of a real image that is minutes of a build spent
// waiting on each answer in turn (614 MB at 7.5 MB/s for the standard
// image). Before it installs, the packages stage asks apt which packages
// it would fetch (--print-uris: their URLs, names and sizes; apt-cache
// show: their SHA256, from the indices apt verified against the signed
// Release), fetches them prefetchJobs at a time into the machine's
// package cache (Plan.PackageCache, shared by every build and backend:
// what an earlier build or another image of a set fetched is not fetched
// again, and the remote cache serves it when there is one), each checked
// against its SHA256, and puts them in apt's own cache in the chroot
// (hard links when on the same file system, else copies) for apt to find.
// A package that fails to come is left to apt, which says why. Without a
// usable package cache they are fetched into the chroot alone.

// prefetchJobs is how many packages are fetched at once.
const prefetchJobs = 4

// aptArchives is apt's package cache in the image (for the native
// backend, the shared cache's staging directory is mounted there).
const aptArchives = "var/cache/apt/archives"

// prefetchItem is one package apt would fetch.
type prefetchItem struct {
	URL, Name string
	Want      archive.FileInfo // Size from apt; SHA256 from its index
}

// parsePrintURIs reads apt-get --print-uris's lines, 'URL' NAME SIZE
// HASH, and keeps the packages fetched over HTTP(S). apt names an MD5 sum
// there when the index has one: the SHA256 is looked up after (shaFor).
func parsePrintURIs(out []byte) ([]prefetchItem, error) {
	var items []prefetchItem
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "'") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasSuffix(f[0], "'") || len(f[0]) < 3 {
			return nil, fmt.Errorf("apt-get --print-uris: unexpected line %q", line)
		}
		u := f[0][1 : len(f[0])-1]
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("apt-get --print-uris: bad size in %q", line)
		}
		name := f[1]
		if strings.ContainsAny(name, "/\x00") || strings.Count(name, "_") != 2 || !strings.HasSuffix(name, ".deb") {
			return nil, fmt.Errorf("apt-get --print-uris: bad file name in %q", line)
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			continue // file:, copy:, cdrom: — apt reads them itself
		}
		items = append(items, prefetchItem{URL: u, Name: name, Want: archive.FileInfo{Size: size}})
	}
	return items, sc.Err()
}

// showArgs are apt-cache show's arguments for the index records of items:
// NAME:ARCH=VERSION from each file name NAME_VERSION_ARCH.deb.
func showArgs(items []prefetchItem) []string {
	args := []string{"show"}
	for _, it := range items {
		f := strings.SplitN(strings.TrimSuffix(it.Name, ".deb"), "_", 3)
		ver, err := url.PathUnescape(f[1])
		if err != nil {
			ver = f[1]
		}
		if f[2] == "all" {
			args = append(args, f[0]+"="+ver)
		} else {
			args = append(args, f[0]+":"+f[2]+"="+ver)
		}
	}
	return args
}

// shaFor sets each item's SHA256 from the index records (apt-cache show's
// output) of the same file name and size; it returns the items that have
// one.
func shaFor(items []prefetchItem, records []byte) ([]prefetchItem, error) {
	pkgs, err := archive.ParsePackagesData(records, "")
	if err != nil {
		return nil, err
	}
	sums := map[string]archive.FileInfo{}
	for _, p := range pkgs {
		if archive.IsSHA256(p.SHA256) {
			sums[p.DebName()] = archive.FileInfo{Size: p.Size, SHA256: p.SHA256}
		}
	}
	var out []prefetchItem
	for _, it := range items {
		if w, ok := sums[it.Name]; ok && w.Size == it.Want.Size {
			it.Want.SHA256 = w.SHA256
			out = append(out, it)
		}
	}
	return out, nil
}

// prefetch fetches the packages apt would fetch to install pkgs (opts:
// more apt options, the mirrors' credentials) into its cache in the
// chroot. What goes wrong before the fetching is left to apt, which
// says it in its own words; only a cancelled build stops here.
func prefetch(ctx context.Context, st *State, pkgs, opts []string) error {
	items, err := toPrefetch(ctx, st, pkgs, opts)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st.Log.Printf("packages not fetched ahead (apt fetches them): %v", err)
		return nil
	}
	if len(items) == 0 {
		return nil
	}
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	var total int64
	for _, it := range items {
		total += it.Want.Size
	}
	cache, err := archive.OpenCache(st.Plan.PackageCache, st.Log.Printf)
	if err != nil {
		st.Log.Printf("package cache %s not used (%v): the packages are fetched into the image alone", st.Plan.PackageCache, err)
		cache = nil
	}
	st.Log.Printf("fetching %d packages (%s), %d at a time", len(items), bytesize.Format(total), prefetchJobs)
	cl := archive.NewClient()
	cl.Auth = st.Plan.Spec.Auth
	start := time.Now()
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
		next   = make(chan prefetchItem)
		copied int
		reused int
	)
	for range prefetchJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				var err error
				linked, had := true, false
				if cache != nil {
					// Whether it was there already, for the log: Get
					// checks its content.
					fi, serr := os.Stat(cache.Path(it.Want.SHA256))
					had = serr == nil && fi.Size() == it.Want.Size
					linked, err = fetchCached(ctx, cl, cache, r, it)
				} else {
					err = fetchInto(ctx, cl, r, it)
				}
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, fmt.Sprintf("%s (%v)", it.Name, err))
				case !linked:
					copied++
				}
				if err == nil && had {
					reused++
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case next <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	st.Log.Printf("fetched %d packages in %.1fs (%s/s)", len(items)-len(failed), secs, bytesize.Format(int64(float64(total)/max(secs, 0.001))))
	if cache != nil {
		st.PackageCache = &report.PackageCache{Dir: st.Plan.PackageCache, Reused: reused, Downloaded: len(items) - len(failed) - reused}
		st.Log.Printf("package cache %s: %d of them were in it, %d downloaded into it", st.Plan.PackageCache, reused, st.PackageCache.Downloaded)
	}
	if copied > 0 {
		st.Log.Printf("%d of them copied from the package cache into the image (another file system than %s)", copied, st.Plan.PackageCache)
	}
	if len(failed) > 0 {
		if len(failed) > 5 {
			failed = append(failed[:5], fmt.Sprintf("and %d more", len(failed)-5))
		}
		st.Log.Printf("left to apt: %s", strings.Join(failed, "; "))
	}
	return nil
}

// toPrefetch lists the packages apt would fetch, with their SHA256.
func toPrefetch(ctx context.Context, st *State, pkgs, opts []string) ([]prefetchItem, error) {
	var out bytes.Buffer
	args := append(append(append(append([]string{}, aptOptions...), opts...), "--print-uris", "-qq", "install"), pkgs...)
	if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: args, Stdout: &out}); err != nil {
		return nil, err
	}
	items, err := parsePrintURIs(out.Bytes())
	if err != nil || len(items) == 0 {
		return nil, err
	}
	out.Reset()
	show := buildlog.Cmd{Name: "apt-cache", Args: showArgs(items), Stdout: &out,
		Brief: fmt.Sprintf("show NAME[:ARCH]=VERSION… (the %d packages apt would fetch)", len(items))}
	if err := st.Chroot.Run(ctx, show); err != nil {
		return nil, err
	}
	return shaFor(items, out.Bytes())
}

// fetchCached puts one package into apt's cache in the image from the
// package cache, which fetches it first if it lacks it (checking its
// SHA256 either way): a hard link to the cached file (read-only; apt-get
// clean only unlinks it, and the cache checks a file again before each
// use), or a copy across file systems. linked says which.
func fetchCached(ctx context.Context, cl *archive.Client, cache *archive.Cache, r *imgroot.Root, it prefetchItem) (linked bool, err error) {
	path, err := cache.Get(ctx, cl, it.URL, it.Name, it.Want)
	if err != nil {
		return false, err
	}
	dst := aptArchives + "/" + it.Name
	err = r.LinkFrom(path, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err == nil, err
	}
	return false, copyInto(r, path, it.Name)
}

// copyInto copies the cached file src into apt's cache in the image as
// name (putInArchives).
func copyInto(r *imgroot.Root, src, name string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return putInArchives(r, name, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}

// fetchInto fetches one package into apt's cache in the image, checked
// against its size and SHA256 (putInArchives).
func fetchInto(ctx context.Context, cl *archive.Client, r *imgroot.Root, it prefetchItem) error {
	return putInArchives(r, it.Name, func(f *os.File) error {
		return cl.DownloadTo(ctx, it.URL, f, it.Name, it.Want)
	})
}

// putInArchives writes name in apt's cache in the image with fill: under
// a temporary name in partial/, renamed into place once fill and the
// close succeeded, removed otherwise.
func putInArchives(r *imgroot.Root, name string, fill func(*os.File) error) error {
	part := aptArchives + "/partial/" + name + ".vmdeb-part"
	f, err := r.Create(part, 0o644)
	if err != nil {
		return err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(part, aptArchives+"/"+name)
	}
	if err != nil {
		r.Remove(part)
	}
	return err
}
