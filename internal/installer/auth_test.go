package installer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"vmdeb/internal/aptauth"
)

// The installer's files come from the build mirror with its credentials.
func TestFetcherBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "builder" || p != "s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("SHA256SUMS\n"))
	}))
	defer srv.Close()
	u := srv.URL + "/debian/dists/trixie/main/installer-amd64/current/images/SHA256SUMS"
	if _, err := (&Fetcher{}).get(context.Background(), u); err == nil {
		t.Fatal("no credentials: want 401")
	}
	f := &Fetcher{Auth: aptauth.Set{{Machine: srv.URL + "/debian", Login: "builder", Password: "s3cret"}}}
	b, err := f.get(context.Background(), u)
	if err != nil || string(b) != "SHA256SUMS\n" {
		t.Fatalf("with credentials: %q %v", b, err)
	}
}
