package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/outbox"
)

// fakeDeadLetters records the calls of the dead-letter endpoints; the Fn fields decide
// the answers.
type fakeDeadLetters struct {
	ListFn      func(f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error)
	ReplayFn    func(seq uint64) (outbox.DeadLetter, error)
	ReplayAllFn func(stream string) ([]outbox.DeadLetter, error)

	mu    sync.Mutex
	calls []string
}

func (f *fakeDeadLetters) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeDeadLetters) List(_ context.Context, filter outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
	f.record("list %q %s", filter.Stream, filter.Since.UTC().Format(time.RFC3339))
	return f.ListFn(filter)
}

func (f *fakeDeadLetters) Replay(_ context.Context, seq uint64) (outbox.DeadLetter, error) {
	f.record("replay %d", seq)
	return f.ReplayFn(seq)
}

func (f *fakeDeadLetters) ReplayAll(_ context.Context, stream string) ([]outbox.DeadLetter, error) {
	f.record("replay all %q", stream)
	return f.ReplayAllFn(stream)
}

var testDeadLetter = outbox.DeadLetter{
	Seq: 7, Stream: "BIGMARKET_EVENTS", Subject: "bigmarket.event.send_award", MsgID: "order-1",
	Reasons: []string{"webhook answered 500", "webhook answered 502"}, DeadAt: time.UnixMilli(1_700_000_000_123),
}

// newDeadLetterServer returns a server with a fake that knows testDeadLetter only, and
// the clock pinned.
func newDeadLetterServer() (*fakeDeadLetters, *Server) {
	f := &fakeDeadLetters{
		ListFn: func(outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
			return []outbox.DeadLetter{testDeadLetter}, nil
		},
		ReplayFn: func(seq uint64) (outbox.DeadLetter, error) {
			if seq != testDeadLetter.Seq {
				return outbox.DeadLetter{}, fmt.Errorf("replay dead letter %d: %w", seq, outbox.ErrNoDeadLetter)
			}
			return testDeadLetter, nil
		},
		ReplayAllFn: func(stream string) ([]outbox.DeadLetter, error) {
			if stream != "" && stream != "BIGMARKET_EVENTS" {
				return nil, fmt.Errorf("stream %q: %w", stream, outbox.ErrUnknownStream)
			}
			return []outbox.DeadLetter{testDeadLetter}, nil
		},
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return f, New(Options{Strategies: newFake(), DeadLetters: f, AdminToken: "s3cret", Now: func() time.Time { return now }})
}

const wantDeadLetterJSON = `[{"seq":7,"stream":"BIGMARKET_EVENTS","subject":"bigmarket.event.send_award","msgId":"order-1",` +
	`"reasons":["webhook answered 500","webhook answered 502"],"deadAt":1700000000123}]`

func TestListDeadLetters(t *testing.T) {
	t.Parallel()
	f, h := newDeadLetterServer()
	for _, tc := range []struct{ query, call string }{
		{"", `list "" 0001-01-01T00:00:00Z`},
		{"?since=24h", `list "" 2026-11-30T12:00:00Z`},
		{"?since=2026-11-01T08:00:00%2B08:00&stream=BIGMARKET_EVENTS", `list "BIGMARKET_EVENTS" 2026-11-01T00:00:00Z`},
	} {
		f.calls = nil
		r := doAdmin(t, h, "GET", "/api/v1/admin/dlq"+tc.query, "Bearer s3cret", "")
		if r.status != 200 || r.Code != "0000" || !jsonEqual(t, r.Data, wantDeadLetterJSON) {
			t.Errorf("%q: HTTP %d %s %s", tc.query, r.status, r.Code, r.Data)
		}
		if len(f.calls) != 1 || f.calls[0] != tc.call {
			t.Errorf("%q: calls %q, want %q", tc.query, f.calls, tc.call)
		}
	}
	f.calls = nil
	for _, q := range []string{"?since=yesterday", "?since=-1h", "?since=0s"} {
		if r := doAdmin(t, h, "GET", "/api/v1/admin/dlq"+q, "Bearer s3cret", ""); r.status != 200 || r.Code != "0002" {
			t.Errorf("%q: HTTP %d %s, want 200 0002", q, r.status, r.Code)
		}
	}
	if len(f.calls) != 0 {
		t.Errorf("bad since reached the store: %q", f.calls)
	}
	f.ListFn = func(filter outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
		return nil, fmt.Errorf("dead letters of %q: %w", filter.Stream, outbox.ErrUnknownStream)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/admin/dlq?stream=NOPE", "Bearer s3cret", ""); r.status != 200 || r.Code != "0002" {
		t.Errorf("unknown stream: HTTP %d %s, want 200 0002", r.status, r.Code)
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		if r := doAdmin(t, h, "GET", "/api/v1/admin/dlq", auth, ""); r.status != 401 || r.Code != "0003" {
			t.Errorf("auth %q: HTTP %d %s, want 401 0003", auth, r.status, r.Code)
		}
	}
}

func TestReplayDeadLetters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		status     int
		code, call string
	}{
		{"by seq", `{"seq":7}`, 200, "0000", "replay 7"},
		{"by seq as string", `{"seq":"7"}`, 200, "0000", "replay 7"},
		{"all", `{"all":true}`, 200, "0000", `replay all ""`},
		{"all of a stream", `{"all":true,"stream":"BIGMARKET_EVENTS"}`, 200, "0000", `replay all "BIGMARKET_EVENTS"`},
		{"unknown seq", `{"seq":8}`, 200, "0002", "replay 8"},
		{"all of an unknown stream", `{"all":true,"stream":"NOPE"}`, 200, "0002", `replay all "NOPE"`},
		{"empty object", `{}`, 200, "0002", ""},
		{"zero seq", `{"seq":0}`, 200, "0002", ""},
		{"negative seq", `{"seq":-7}`, 200, "0002", ""},
		{"seq and all", `{"seq":7,"all":true}`, 200, "0002", ""},
		{"stream without all", `{"seq":7,"stream":"BIGMARKET_EVENTS"}`, 200, "0002", ""},
		{"all false", `{"all":false}`, 200, "0002", ""},
		{"fractional seq", `{"seq":7.5}`, 400, "0002", ""},
		{"all as a string", `{"all":"yes"}`, 400, "0002", ""},
		{"malformed", `{"seq":`, 400, "0002", ""},
		{"empty body", ``, 400, "0002", ""},
	} {
		f, h := newDeadLetterServer()
		r := doAdmin(t, h, "POST", "/api/v1/admin/dlq/replay", "Bearer s3cret", tc.body)
		if r.status != tc.status || r.Code != tc.code {
			t.Errorf("%s: HTTP %d %s %s, want HTTP %d %s", tc.name, r.status, r.Code, r.Data, tc.status, tc.code)
		}
		if tc.code == "0000" && !jsonEqual(t, r.Data, wantDeadLetterJSON) {
			t.Errorf("%s: data %s, want %s", tc.name, r.Data, wantDeadLetterJSON)
		}
		var want []string
		if tc.call != "" {
			want = []string{tc.call}
		}
		if fmt.Sprint(f.calls) != fmt.Sprint(want) {
			t.Errorf("%s: calls %q, want %q", tc.name, f.calls, want)
		}
	}
	_, h := newDeadLetterServer()
	if r := doAdmin(t, h, "POST", "/api/v1/admin/dlq/replay", "", `{"seq":7}`); r.status != 401 || r.Code != "0003" {
		t.Errorf("without the admin token: HTTP %d %s, want 401 0003", r.status, r.Code)
	}
}

// TestDeadLettersNotServedWithout: without a DeadLetters the endpoints are unknown.
func TestDeadLettersNotServedWithout(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), AdminToken: "s3cret"})
	if r := doAdmin(t, h, "GET", "/api/v1/admin/dlq", "Bearer s3cret", ""); r.status != 404 || r.Code != "0002" {
		t.Errorf("HTTP %d %s, want 404 0002", r.status, r.Code)
	}
}

// jsonEqual reports whether the JSON got and want hold the same value.
func jsonEqual(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	return fmt.Sprint(g) == fmt.Sprint(w)
}
