package httpapi

import (
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
	benchTap(b, h)
}
