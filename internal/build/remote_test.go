package build

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"oras.land/oras-go/v2/content/memory"

	"vmdeb/internal/remotecache"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// remoteActions are the remote cache's records of a build, "stage action".
func remoteActions(st *State) []string {
	var l []string
	for _, r := range st.Remote.Stages {
		l = append(l, r.Stage+" "+r.Action)
		if (r.Action == report.RemotePulled || r.Action == report.RemotePushed) && !strings.HasPrefix(r.Digest, "sha256:") {
			l = append(l, "no digest for "+r.Stage)
		}
	}
	slices.Sort(l)
	return l
}

// Two machines (their own stage caches) share one registry: the first
// pushes both cached stages, the second pulls them and runs neither.
func TestRunRemoteCacheShared(t *testing.T) {
	ref := remotecache.Ref{Host: "127.0.0.1:5000", Repo: "vmdeb/cache", PlainHTTP: true}
	store := memory.New()
	machine := func() (*fakeBuild, *State) {
		b := newFakeBuild(t)
		c, err := stagecache.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b.opts.Cache, b.opts.Remote = c, remotecache.NewWithTarget(ref, store)
		st, err := b.run(context.Background(), b.pipeline("p1"))
		if err != nil {
			t.Fatal(err)
		}
		return b, st
	}
	_, st := machine()
	if got, want := remoteActions(st), []string{"bootstrap miss", "bootstrap pushed", "packages miss", "packages pushed"}; !slices.Equal(got, want) {
		t.Errorf("first machine: %q, want %q", got, want)
	}
	b, st := machine()
	if got, want := remoteActions(st), []string{"bootstrap pulled", "packages pulled"}; !slices.Equal(got, want) {
		t.Errorf("second machine: %q, want %q", got, want)
	}
	if slices.Contains(b.r.events, "run bootstrap") || slices.Contains(b.r.events, "run packages") {
		t.Errorf("the second machine ran a cached stage: %q", b.r.events)
	}
	checkCache(t, st, report.CacheRestored, report.CacheRestored)
	if !strings.Contains(b.term.String(), "remote cache: packages pulled (key ") {
		t.Errorf("log:\n%s", b.term.String())
	}
}

// A registry that refuses every request: the build runs every stage, says
// so once, and records the failures.
func TestRunRemoteCacheRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	ref, err := remotecache.Parse("oci://"+strings.TrimPrefix(srv.URL, "http://")+"/vmdeb/cache", false)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := remotecache.New(*ref)
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBuild(t)
	c, _ := stagecache.Open(t.TempDir())
	b.opts.Cache, b.opts.Remote = c, cl
	st, err := b.run(context.Background(), b.pipeline("p1"))
	if err != nil {
		t.Fatalf("the build failed with the registry refusing: %v", err)
	}
	if !slices.Contains(b.r.events, "run bootstrap") || !slices.Contains(b.r.events, "run packages") {
		t.Errorf("events %q", b.r.events)
	}
	checkCache(t, st, report.CacheSaved, report.CacheSaved)
	if got, want := remoteActions(st), []string{"bootstrap pull-failed", "bootstrap push-failed", "packages pull-failed", "packages push-failed"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if n := strings.Count(b.term.String(), "WARNING: remote cache"); n != 1 || st.Remote.Warning == "" {
		t.Errorf("%d warnings (want 1), report warning %q:\n%s", n, st.Remote.Warning, b.term.String())
	}
}
