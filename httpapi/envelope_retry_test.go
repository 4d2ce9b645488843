package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/guard"
)

type waitErr struct{ d time.Duration }

func (e waitErr) Error() string             { return "wait" }
func (e waitErr) RetryAfter() time.Duration { return e.d }
func (e waitErr) Unwrap() error             { return guard.ErrTimeout }

func TestSystemRefusalsCarryRetryAfter(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("draw: %w", guard.ErrTimeout), "1"},
		{fmt.Errorf("breaker: %w", waitErr{2300 * time.Millisecond}), "3"},
		{fmt.Errorf("recharge sku 9014: %w", activity.ErrSKUStockMissing), "1"},
		{guard.ErrRateLimited, ""},
		{errors.New("boom"), ""},
	}
	for _, c := range cases {
		s := &Server{opts: Options{MaxBodyBytes: 1 << 10}, mux: http.NewServeMux()}
		s.opts.Logger = slog.New(slog.DiscardHandler)
		err := c.err
		s.handle("GET /x", func(*http.Request) (any, error) { return nil, err })
		w := httptest.NewRecorder()
		s.mux.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
		if got := w.Header().Get("Retry-After"); got != c.want {
			t.Errorf("%v: Retry-After %q, want %q", c.err, got, c.want)
		}
	}
}
