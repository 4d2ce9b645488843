package httpapi

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/redpacket"
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
		{fmt.Errorf("grab: %w", redpacket.ErrUnavailable), "1"},
		{fmt.Errorf("deduct: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "1"},
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

// redisReply is an error reply as go-redis returns it (its proto.RedisError).
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// TestUnreachableBackendsAreRetryable checks that a backend refusing or dropping the
// connection, or a Redis Cluster failing over, answers 0009 (the outcome is unknown or
// nothing was done: retry), not 500 0001; and that an error that merely mentions such a
// word, or an ordinary error reply, stays 0001.
func TestUnreachableBackendsAreRetryable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		code Code
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, CodeBusy},
		{fmt.Errorf("take: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), CodeBusy},
		{fmt.Errorf("deduct award 101: %w", io.EOF), CodeBusy},
		{fmt.Errorf("insert award record: %w", driver.ErrBadConn), CodeBusy},
		{fmt.Errorf("grab: %w", redisReply("CLUSTERDOWN The cluster is down")), CodeBusy},
		{redisReply("READONLY You can't write against a read only replica."), CodeBusy},
		{redisReply("TRYAGAIN Multiple keys request during rehashing of slot"), CodeBusy},
		{redisReply("ERR Error running script (call to f_x): wrong number of args"), CodeUnknown},
		{errors.New("CLUSTERDOWN is only a word here"), CodeUnknown},
		{errors.New("connection refused, said a string"), CodeUnknown},
	} {
		ae := classify(c.err)
		if ae.code != c.code {
			t.Errorf("%v: %s (HTTP %d), want %s", c.err, ae.code, ae.status, c.code)
		}
		if c.code == CodeBusy && (ae.status != http.StatusOK || ae.retryAfter != defaultRetryAfter) {
			t.Errorf("%v: HTTP %d, Retry-After %v; want 200 with %v", c.err, ae.status, ae.retryAfter, defaultRetryAfter)
		}
	}
}
