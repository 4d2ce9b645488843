// Package bench load-tests an HTTP endpoint of the API and summarizes throughput, latency and big-market response codes.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by Run to zero Options fields.
const (
	DefaultMethod  = http.MethodPost
	DefaultTimeout = 5 * time.Second
)

// Options describes one load test. The zero value of every field but URL
// has a usable default.
type Options struct {
	// URL is the endpoint to load, e.g.
	// http://localhost:8091/api/v1/raffle/strategy/random_raffle.
	URL string

	// Method defaults to POST.
	Method string

	// Header is sent with every request; it is cloned once and never
	// mutated. When Body is set and Header has no Content-Type, Run sends
	// application/json.
	Header http.Header

	// Body returns the body of request seq (unique across the run, counted
	// from 0, warmup included) sent by worker (0 to Concurrency-1). It is
	// called once per request so that callers can vary e.g. the userId; it
	// may return the same slice every time, and must not modify a slice
	// after returning it. Nil sends no body.
	Body func(worker int, seq uint64) []byte

	// Auth, when set, returns the Authorization header of request seq (as Body is
	// called, once per request): a user's bearer token, so that each request can be
	// another user's on the _by_token endpoints. It replaces any Authorization in Header.
	Auth func(worker int, seq uint64) string

	// Concurrency is the number of workers, each with at most one request in
	// flight on its own keep-alive connection. Zero means 1.
	Concurrency int

	// Duration is how long requests are recorded, after Warmup. Requests
	// caps how many are recorded (0 = unlimited). The run stops at whichever
	// limit comes first, or when ctx is done; with neither limit it runs
	// until ctx is done.
	Duration time.Duration
	Requests int64

	// Warmup is how long requests are sent, but not recorded, before
	// measuring starts, so that connections, caches, pools and prepared
	// statements are warm.
	Warmup time.Duration

	// Timeout bounds each request, body included; it defaults to 5s. A
	// request that times out counts as a transport error.
	Timeout time.Duration

	// Progress, if not nil, receives one line per second while measuring:
	// elapsed time, requests, requests per second over the last second,
	// and errors so far.
	Progress io.Writer

	// Client, if not nil, replaces the built-in client (for TLS settings or
	// a test transport). Run uses a copy of it whose Timeout is Timeout.
	Client *http.Client
}

// readBufSize is how much of each response body is kept to look for the
// envelope code; the rest is drained into io.Discard.
const readBufSize = 4 << 10

// maxCodes bounds the distinct envelope codes a worker tracks, so that a
// misbehaving server cannot grow the maps without limit; further codes are
// counted under otherCode.
const (
	maxCodes  = 64
	otherCode = "other"
)

// successCode is the envelope code of a successful request.
const successCode = "0000"

// Run sends requests to opts.URL from opts.Concurrency workers until a limit
// of opts is reached or ctx is done, and summarizes the recorded requests.
//
// When the Duration limit is reached, Run stops sending and waits for the
// requests in flight (at most Timeout): cutting them off would drop the
// slowest requests first and flatter the tail latencies. When ctx is done,
// Run aborts the requests in flight, which are not recorded, and returns the
// Summary of what was recorded so far together with an error wrapping
// ctx.Err().
func Run(ctx context.Context, opts Options) (Summary, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	tmpl, err := http.NewRequestWithContext(ctx, o.Method, o.URL, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("build request: %w", err)
	}
	tmpl.Header = o.Header.Clone()
	if tmpl.Header == nil {
		tmpl.Header = make(http.Header)
	}
	if o.Body != nil && tmpl.Header.Get("Content-Type") == "" {
		tmpl.Header.Set("Content-Type", "application/json")
	}

	client, transport := o.client()
	if transport != nil {
		defer transport.CloseIdleConnections()
	}

	r := &runner{
		ctx:    ctx,
		client: client,
		tmpl:   tmpl,
		body:   o.Body,
		auth:   o.Auth,
		limit:  o.Requests,
	}
	// Without a warmup every request counts, the first ones included.
	start := time.Now()
	r.measuring.Store(o.Warmup == 0)

	workers := make([]*worker, o.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, codes: make(map[string]*int64)}
		workers[i] = w
		wg.Go(func() { r.loop(w) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	if o.Warmup > 0 {
		t := time.NewTimer(o.Warmup)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		start = time.Now()
		r.measuring.Store(true)
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	if o.Progress != nil {
		go func() {
			defer close(progressDone)
			report(o.Progress, time.Second, start, workers, stopProgress)
		}()
	} else {
		close(progressDone)
	}

	var deadline <-chan time.Time
	if o.Duration > 0 {
		t := time.NewTimer(o.Duration)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-done:
	case <-deadline:
		r.stop.Store(true)
		<-done
	case <-ctx.Done():
		r.stop.Store(true)
		<-done
	}
	end := time.Now()
	close(stopProgress)
	<-progressDone

	s := summarize(o, workers, start, end)
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("run interrupted: %w", err)
	}
	return s, nil
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		return o, errors.New("bench: no URL")
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return o, fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return o, fmt.Errorf("bench: URL %q: scheme must be http or https", o.URL)
	}
	if o.Concurrency < 0 || o.Requests < 0 || o.Duration < 0 || o.Warmup < 0 || o.Timeout < 0 {
		return o, errors.New("bench: negative concurrency, requests, duration, warmup or timeout")
	}
	if o.Method == "" {
		o.Method = DefaultMethod
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	return o, nil
}

// client returns the client to load with and, when Run built it, its
// transport so that Run can close the idle connections afterwards.
func (o Options) client() (*http.Client, *http.Transport) {
	if o.Client != nil {
		c := *o.Client
		c.Timeout = o.Timeout
		return &c, nil
	}
	// One keep-alive connection per worker, no proxy from the environment
	// (it would be measured too), no gzip (decompressing costs the CPU the
	// server needs), HTTP/1.1 so that workers do not share a connection.
	t := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   o.Timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        o.Concurrency,
		MaxIdleConnsPerHost: o.Concurrency,
		MaxConnsPerHost:     o.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: o.Timeout,
		DisableCompression:  true,
	}
	return &http.Client{
		Transport: t,
		Timeout:   o.Timeout,
		// Redirects are outcomes to count, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, t
}

// runner is the state the workers share; everything on the hot path is
// read-only or atomic.
type runner struct {
	ctx    context.Context // the caller's: aborts requests in flight
	client *http.Client
	tmpl   *http.Request
	body   func(worker int, seq uint64) []byte
	auth   func(worker int, seq uint64) string
	limit  int64

	seq       atomic.Uint64
	tickets   atomic.Int64 // recorded requests started, against limit
	measuring atomic.Bool
	stop      atomic.Bool
}

// worker is one load loop and its private tallies.
type worker struct {
	id        int
	hist      histogram
	status    [1000]int64 // by HTTP status; anything outside 0-999 at 0
	codes     map[string]*int64
	successes int64
	transport int64
	errSample string

	// done and errs are read by the progress reporter while the worker
	// runs; only the worker writes them.
	done atomic.Int64
	errs atomic.Int64
}

// loop sends requests until the runner stops.
func (r *runner) loop(w *worker) {
	buf := make([]byte, readBufSize)
	for !r.stop.Load() {
		// A request counts only if measuring had started when it was sent,
		// so that none straddles the end of the warmup.
		measured := r.measuring.Load()
		if measured && r.limit > 0 && r.tickets.Add(1) > r.limit {
			r.stop.Store(true)
			return
		}
		req := r.request(w.id, r.seq.Add(1)-1)
		start := time.Now()
		status, code, err := r.do(req, buf)
		elapsed := time.Since(start)
		if err != nil && r.ctx.Err() != nil {
			return // aborted by the caller: not an outcome of the server
		}
		if measured {
			w.record(elapsed, status, code, err)
		}
	}
}

// bodyReader is a request body; Close is a no-op so that one allocation
// covers the reader and the closer.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// request is a shallow copy of the template with its own body. The header
// map and URL are shared (neither client nor transport mutates them), but for
// a request with its own Authorization, which gets a copy of the header.
func (r *runner) request(worker int, seq uint64) *http.Request {
	req := new(http.Request)
	*req = *r.tmpl
	if r.auth != nil {
		req.Header = r.tmpl.Header.Clone()
		req.Header.Set("Authorization", r.auth(worker, seq))
	}
	if r.body != nil {
		if b := r.body(worker, seq); len(b) > 0 {
			br := new(bodyReader)
			br.Reset(b)
			req.Body = br
			req.ContentLength = int64(len(b))
		}
	}
	return req
}

// do sends req (see send) and returns the envelope code of its answer, which
// aliases buf.
func (r *runner) do(req *http.Request, buf []byte) (status int, code []byte, err error) {
	status, body, err := send(r.client, req, buf)
	if err != nil {
		return status, nil, err
	}
	return status, envelopeCode(body), nil
}

// send sends req and reads the whole response body, keeping its first readBufSize bytes
// in buf so that the connection can be reused; body aliases buf.
func send(client *http.Client, req *http.Request, buf []byte) (status int, body []byte, err error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	n, eof := 0, false
	for n < len(buf) {
		m, rerr := resp.Body.Read(buf[n:])
		n += m
		if rerr == io.EOF {
			eof = true
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if !eof && err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, buf[:n], nil
}

// record tallies one measured request. Only requests that got a whole
// response go into the latency histogram: a transport error's time says how
// long it took to fail (a refused connection, a timeout), not how fast the
// server answers.
func (w *worker) record(d time.Duration, status int, code []byte, err error) {
	if err != nil {
		w.transport++
		if w.errSample == "" {
			w.errSample = err.Error()
		}
		w.errs.Add(1)
		w.done.Add(1)
		return
	}
	w.hist.record(d)
	if status < 0 || status >= len(w.status) {
		status = 0
	}
	w.status[status]++
	if code != nil {
		c := w.codes[string(code)] // no allocation: the compiler converts in place
		if c == nil {
			key := string(code)
			if len(w.codes) >= maxCodes {
				key = otherCode
			}
			if c = w.codes[key]; c == nil {
				c = new(int64)
				w.codes[key] = c
			}
		}
		*c++
	}
	if status == http.StatusOK && string(code) == successCode {
		w.successes++
	} else {
		w.errs.Add(1)
	}
	w.done.Add(1)
}

// report writes a progress line every period until stop is closed.
func report(out io.Writer, every time.Duration, start time.Time, workers []*worker, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var done, errs int64
			for _, w := range workers {
				done += w.done.Load()
				errs += w.errs.Load()
			}
			rps := float64(done-last) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(out, "%7.1fs %12d requests %10.0f rps %10d errors\n",
				now.Sub(start).Seconds(), done, rps, errs)
			last, lastAt = done, now
		}
	}
}
