package archive

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"vmdeb/internal/aptauth"
)

// A mirror behind basic authentication: the client sends the credentials
// of the entry that matches, and only there.
func TestClientBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "builder" || p != "s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("Origin: Debian\n"))
	}))
	defer srv.Close()
	c := NewClient()
	c.Retries = 0
	if _, err := c.Get(context.Background(), srv.URL+"/debian/dists/trixie/InRelease", 1<<20); err == nil {
		t.Fatal("no credentials: want 401")
	} else if se := (*StatusError)(nil); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %v", err)
	}
	c.Auth = aptauth.Set{{Machine: srv.URL + "/other", Login: "x", Password: "y"}, {Machine: srv.URL + "/debian", Login: "builder", Password: "s3cret"}}
	b, err := c.Get(context.Background(), srv.URL+"/debian/dists/trixie/InRelease", 1<<20)
	if err != nil || string(b) != "Origin: Debian\n" {
		t.Fatalf("with credentials: %q %v", b, err)
	}
}
