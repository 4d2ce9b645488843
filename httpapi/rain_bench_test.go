package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// discardWriter is a ResponseWriter that keeps the status and drops the body, so that a
// benchmark of a handler counts the handler's costs and not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(s int)   { w.status = s }
func (w *discardWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	return len(b), nil
}

// BenchmarkRainGrabMiss is the tap that the plan paces: the miss the service answers from
// its local note, through the whole API handler (CORS, routing, body, envelope, metrics).
// Its allocations are the server's own per-tap cost beyond net/http's.
func BenchmarkRainGrabMiss(b *testing.B) {
	h := New(Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true, Registry: prometheus.NewRegistry()})
	body := []byte(`{"userId":"unlucky","sessionId":42}`)
	req, err := http.NewRequest(http.MethodPost, "http://x/api/v1/rain/grab", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	rd := bytes.NewReader(body)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		w.h, w.status, w.n = http.Header{}, 0, 0
		h.ServeHTTP(w, req)
	}
	if w.status != http.StatusOK || w.n == 0 {
		b.Fatalf("status %d, %d bytes", w.status, w.n)
	}
}
