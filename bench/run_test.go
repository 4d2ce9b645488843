package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// envelopeServer answers like bigmarket: by turns success, rate limited
// (both HTTP 200) and an internal error (HTTP 500), and counts what it sent.
type envelopeServer struct {
	n     atomic.Int64
	sent  [3]atomic.Int64
	bytes atomic.Int64
}

var envelopeReplies = [3]struct {
	status int
	code   string
}{
	{http.StatusOK, "0000"},
	{http.StatusOK, "0005"},
	{http.StatusInternalServerError, "0001"},
}

func (s *envelopeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.bytes.Add(int64(len(b)))
	i := (s.n.Add(1) - 1) % 3
	reply := envelopeReplies[i]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.status)
	fmt.Fprintf(w, `{"code":"%s","info":"x","data":{"awardId":101,"awardIndex":1}}`, reply.code)
	s.sent[i].Add(1)
}

func TestRunCountsOutcomes(t *testing.T) {
	t.Parallel()
	srv := new(envelopeServer)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	const n = 300
	body := []byte(`{"strategyId":100006}`)
	s, err := Run(context.Background(), Options{
		URL:         ts.URL + "/api/v1/raffle/strategy/random_raffle",
		Body:        func(int, uint64) []byte { return body },
		Concurrency: 8,
		Requests:    n,
	})
	if err != nil {
		t.Fatal(err)
	}
	ok, limited, failed := srv.sent[0].Load(), srv.sent[1].Load(), srv.sent[2].Load()
	if got := srv.n.Load(); got != n {
		t.Errorf("server saw %d requests, want %d", got, n)
	}
	if got := srv.bytes.Load(); got != n*int64(len(body)) {
		t.Errorf("server read %d body bytes, want %d", got, n*len(body))
	}
	if s.Requests != n || s.Successes != ok || s.Errors != limited+failed || s.TransportErrors != 0 {
		t.Errorf("requests, successes, errors, transport = %d, %d, %d, %d; want %d, %d, %d, 0",
			s.Requests, s.Successes, s.Errors, s.TransportErrors, n, ok, limited+failed)
	}
	wantCodes := map[string]int64{"0000": ok, "0005": limited, "0001": failed}
	if fmt.Sprint(s.Codes) != fmt.Sprint(wantCodes) {
		t.Errorf("codes = %v, want %v", s.Codes, wantCodes)
	}
	wantStatus := map[int]int64{200: ok + limited, 500: failed}
	if fmt.Sprint(s.StatusCounts) != fmt.Sprint(wantStatus) {
		t.Errorf("status counts = %v, want %v", s.StatusCounts, wantStatus)
	}
	l := s.Latency
	if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency not ordered: %+v", l)
	}
	if s.Duration <= 0 || s.RPS <= 0 || s.Concurrency != 8 || s.Method != http.MethodPost {
		t.Errorf("summary header: %+v", s)
	}
}

func TestRunBodySeq(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		seen  = make(map[uint64]bool)
		dupes int
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			UserID string `json:"userId"`
			Seq    uint64 `json:"seq"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.UserID != "user"+strconv.FormatUint(in.Seq, 10) {
			w.WriteHeader(http.StatusBadRequest)
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Test") != "yes" {
			w.WriteHeader(http.StatusBadRequest)
		}
		io.WriteString(w, `{"code":"0000"}`)
	}))
	defer ts.Close()

	const workers, n = 4, 200
	s, err := Run(context.Background(), Options{
		URL:    ts.URL,
		Header: http.Header{"X-Test": {"yes"}},
		Body: func(worker int, seq uint64) []byte {
			mu.Lock()
			if seen[seq] {
				dupes++
			}
			seen[seq] = true
			mu.Unlock()
			if worker < 0 || worker >= workers {
				t.Errorf("worker %d out of range", worker)
			}
			return fmt.Appendf(nil, `{"userId":"user%d","seq":%d}`, seq, seq)
		},
		Concurrency: workers,
		Requests:    n,
	})
	if err != nil {
		t.Fatal(err)
	}
	if dupes != 0 || len(seen) != n {
		t.Errorf("Body called with %d distinct seq values and %d duplicates, want %d and 0", len(seen), dupes, n)
	}
	for seq := range uint64(n) {
		if !seen[seq] {
			t.Errorf("seq %d never used", seq)
		}
	}
	if s.Successes != n {
		t.Errorf("successes = %d, want %d (status counts %v)", s.Successes, n, s.StatusCounts)
	}
}

func TestRunDurationStops(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(new(envelopeServer))
	defer ts.Close()

	began := time.Now()
	s, err := Run(context.Background(), Options{
		URL:         ts.URL,
		Concurrency: 4,
		Duration:    200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("a 200ms run took %v", took)
	}
	if s.Duration < 0.2 || s.Requests == 0 {
		t.Errorf("duration %.3fs, %d requests", s.Duration, s.Requests)
	}
}

func TestRunWarmupNotRecorded(t *testing.T) {
	t.Parallel()
	srv := new(envelopeServer)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	s, err := Run(context.Background(), Options{
		URL:         ts.URL,
		Concurrency: 2,
		Warmup:      100 * time.Millisecond,
		Requests:    50,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 50 {
		t.Errorf("recorded %d requests, want 50", s.Requests)
	}
	if got := srv.n.Load(); got <= 50 {
		t.Errorf("server saw %d requests, want warmup ones beyond the 50", got)
	}
}

func TestRunContextCancel(t *testing.T) {
	t.Parallel()
	// The server never answers, so only the cancellation can end the run.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	s, err := Run(ctx, Options{URL: ts.URL, Concurrency: 4, Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("cancelled run took %v", took)
	}
	if s.Requests != 0 || s.TransportErrors != 0 {
		t.Errorf("aborted requests were recorded: %d requests, %d transport errors", s.Requests, s.TransportErrors)
	}
}

func TestRunTransportErrors(t *testing.T) {
	t.Parallel()
	// A port that was listening and no longer is refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	s, err := Run(context.Background(), Options{URL: "http://" + addr, Concurrency: 2, Requests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 10 || s.TransportErrors != 10 || s.Errors != 10 || s.TransportError == "" {
		t.Errorf("requests %d, transport errors %d (%q), errors %d; want 10 each",
			s.Requests, s.TransportErrors, s.TransportError, s.Errors)
	}
	if len(s.StatusCounts) != 0 || s.Latency.Max != 0 {
		t.Errorf("failed requests counted as responses: %v, %+v", s.StatusCounts, s.Latency)
	}
}

func TestRunOptionErrors(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{},
		{URL: "localhost:8091/api"},
		{URL: "http://x/\x7f"},
		{URL: "http://x/", Concurrency: -1},
		{URL: "http://x/", Method: "BAD METHOD"},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) succeeded", o)
		}
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	w := &worker{}
	w.done.Store(42)
	w.errs.Store(2)
	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		report(lockedWriter{&mu, &out}, 5*time.Millisecond, time.Now(), []*worker{w}, stop)
	}()
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		s := out.String()
		mu.Unlock()
		if strings.Contains(s, "\n") {
			if !strings.Contains(s, "42 requests") || !strings.Contains(s, "2 errors") {
				t.Errorf("progress line %q", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress line")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-finished
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSummaryOutput(t *testing.T) {
	t.Parallel()
	s := Summary{
		URL: "http://x/", Method: "POST", Concurrency: 2, Duration: 1, Requests: 3, Successes: 2, Errors: 1,
		RPS: 3, StatusCounts: map[int]int64{200: 3}, Codes: map[string]int64{"0000": 2, "0005": 1},
		Latency: Latency{P50: 1.5, P999: 9},
	}
	var b bytes.Buffer
	if err := s.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"url", "concurrency", "duration", "requests", "successes", "errors", "rps",
		"transportErrors", "statusCounts", "codes", "start", "end"} {
		if _, ok := m[key]; !ok {
			t.Errorf("JSON has no %q: %s", key, b.String())
		}
	}
	if lat, _ := m["latency"].(map[string]any); lat["p50"] != 1.5 || lat["p999"] != 9.0 {
		t.Errorf("latency JSON = %v", m["latency"])
	}
	str := s.String()
	for _, want := range []string{"POST http://x/", "requests", `"0005"`, "p99.9 ", "200"} {
		if !strings.Contains(str, want) {
			t.Errorf("String() lacks %q:\n%s", want, str)
		}
	}
}

func TestWorkerRecordDoesNotAllocate(t *testing.T) {
	w := &worker{codes: make(map[string]*int64)}
	body := []byte(`{"code":"0000","info":"ok"}`)
	w.record(time.Millisecond, 200, envelopeCode(body), nil) // first sight of a code allocates its counter
	if n := testing.AllocsPerRun(1000, func() {
		w.record(time.Millisecond, 200, envelopeCode(body), nil)
	}); n != 0 {
		t.Errorf("record allocates %v times per request", n)
	}
}

func TestEnvelopeCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		want string // "<nil>" for none
	}{
		{`{"code":"0000","info":"成功","data":{"awardId":101}}`, "0000"},
		{`{ "code" : "ERR_BIZ_005" , "info":"x"}`, "ERR_BIZ_005"},
		{"{\n  \"code\":\n\t\"0005\"\n}", "0005"},
		{`{"code":0}`, "0"},
		{`{"code":12,"info":"x"}`, "12"},
		{`{"code":"0000"`, "0000"},
		{`{"code":"00`, "<nil>"},
		{`{"code":12`, "<nil>"},
		{`{"code"}`, "<nil>"},
		{`{"code":}`, "<nil>"},
		{`{"codes":"0000"}`, "<nil>"},
		{`404 page not found`, "<nil>"},
		{``, "<nil>"},
	}
	for _, tt := range tests {
		got := envelopeCode([]byte(tt.body))
		s := string(got)
		if got == nil {
			s = "<nil>"
		}
		if s != tt.want {
			t.Errorf("envelopeCode(%q) = %s, want %s", tt.body, s, tt.want)
		}
	}
}

// BenchmarkRunAgainstInProcessServer measures the generator's own throughput against
// a trivial in-process server: go test -run x -bench RunAgainst ./bench/
func BenchmarkRunAgainstInProcessServer(b *testing.B) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"code":"0000","info":"成功","data":{"awardId":101,"awardIndex":1}}`)
	}))
	defer ts.Close()
	body := []byte(`{"strategyId":100006}`)
	b.ResetTimer()
	s, err := Run(context.Background(), Options{
		URL:         ts.URL + "/api/v1/raffle/strategy/random_raffle",
		Body:        func(int, uint64) []byte { return body },
		Concurrency: 32,
		Requests:    int64(b.N),
	})
	if err != nil {
		b.Fatal(err)
	}
	if s.Successes != int64(b.N) {
		b.Fatalf("%d of %d requests succeeded", s.Successes, b.N)
	}
	b.ReportMetric(s.RPS, "req/s")
}

// TestRunAuthPerRequest checks that Auth gives each request its own Authorization, by the
// same sequence numbers as Body, over any Authorization in Header, and that answers
// without an envelope (a proxy's 502) are counted as unenveloped.
func TestRunAuthPerRequest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]string{} // body → Authorization
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[string(b)] = r.Header.Get("Authorization")
		mu.Unlock()
		if len(b)%2 == 0 { // every other length: nginx's page, no envelope
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>502 Bad Gateway</html>")
			return
		}
		io.WriteString(w, `{"code":"0000","info":"ok"}`)
	}))
	defer ts.Close()
	const n = 100
	s, err := Run(context.Background(), Options{
		URL: ts.URL, Concurrency: 4, Requests: n,
		Header: http.Header{"Authorization": {"Bearer shared"}},
		Body:   func(_ int, seq uint64) []byte { return []byte(strconv.FormatUint(seq, 10)) },
		Auth:   func(_ int, seq uint64) string { return "Bearer u" + strconv.FormatUint(seq, 10) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct bodies, want %d", len(seen), n)
	}
	wantBad := int64(0)
	for body, auth := range seen {
		if auth != "Bearer u"+body {
			t.Errorf("request %s carried %q", body, auth)
		}
		if len(body)%2 == 0 {
			wantBad++
		}
	}
	if s.Unenveloped() != wantBad || s.Codes["0000"] != n-wantBad || s.StatusCounts[http.StatusBadGateway] != wantBad {
		t.Errorf("unenveloped %d, codes %v, statuses %v; want %d 502s without an envelope", s.Unenveloped(), s.Codes, s.StatusCounts, wantBad)
	}
}

// TestDrawOutcomeWithoutEnvelope checks that a draw answered without an envelope is an
// unknown outcome, not a refusal: the node may have drawn before it died.
func TestDrawOutcomeWithoutEnvelope(t *testing.T) {
	t.Parallel()
	page := []byte("<html>502 Bad Gateway</html>")
	if got := drawOutcome(envelopeCode(page), page, nil); got != drawUnknown {
		t.Errorf("502 page: outcome %d, want unknown", got)
	}
	refused := []byte(`{"code":"0006","info":"timeout"}`)
	if got := drawOutcome(envelopeCode(refused), refused, nil); got != drawRefused {
		t.Errorf("0006: outcome %d, want refused", got)
	}
	s := &Summary{Requests: 10, TransportErrors: 1, Codes: map[string]int64{"0000": 5, "0009": 1, "0006": 1}}
	if draws, timedOut, unknown := DrawOutcomes(s); draws != 5 || timedOut != 1 || unknown != 1+1+2 {
		t.Errorf("DrawOutcomes = %d, %d, %d; want 5 draws, 1 timed out, 4 unknown (a 0009, a transport error, 2 without an envelope)", draws, timedOut, unknown)
	}
}
