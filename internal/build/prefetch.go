package build

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/imgroot"
)

// Packages fetched several at a time. apt fetches the packages of an
// install one after another over one connection per mirror; for the
// hundreds of packages of a real image that is minutes of a build spent
// waiting on each answer in turn (614 MB at 7.5 MB/s for the standard
// image). Before it installs, the packages stage asks apt which packages
// it would fetch (--print-uris: their URLs, names and sizes; apt-cache
// show: their SHA256, from the indices apt verified against the signed
// Release), fetches them
// prefetchJobs at a time into apt's own cache in the chroot, each checked
// against its SHA256 before it takes its name there, and lets apt find
// them. A package that fails to come is left to apt, which says why.

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
	st.Log.Printf("fetching %d packages (%s), %d at a time", len(items), bytesize.Format(total), prefetchJobs)
	cl := archive.NewClient()
	cl.Auth = st.Plan.Spec.Auth
	start := time.Now()
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
		next   = make(chan prefetchItem)
	)
	for range prefetchJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := fetchInto(ctx, cl, r, it); err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s (%v)", it.Name, err))
					mu.Unlock()
				}
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

// fetchInto fetches one package into apt's cache in the image: written
// under a temporary name in partial/, checked, then renamed into place.
func fetchInto(ctx context.Context, cl *archive.Client, r *imgroot.Root, it prefetchItem) error {
	part := aptArchives + "/partial/" + it.Name + ".vmdeb-part"
	f, err := r.Create(part, 0o644)
	if err != nil {
		return err
	}
	err = cl.DownloadTo(ctx, it.URL, f, it.Name, it.Want)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(part, aptArchives+"/"+it.Name)
	}
	if err != nil {
		r.Remove(part)
	}
	return err
}
