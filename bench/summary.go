package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the outcome of a Run, covering only the measured requests
// (warmup excluded).
type Summary struct {
	URL         string `json:"url"`
	Method      string `json:"method"`
	Concurrency int    `json:"concurrency"`

	// Duration is the measured time in seconds, from the end of the warmup
	// until the last request finished.
	Duration float64 `json:"duration"`

	// Requests counts the recorded requests; Successes those answered with
	// HTTP 200 and envelope code "0000"; Errors all the others: transport
	// errors, other statuses, other codes.
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	Errors    int64 `json:"errors"`

	// TransportErrors counts requests that got no complete response
	// (refused, reset, timed out); TransportError is the first one's text.
	TransportErrors int64  `json:"transportErrors"`
	TransportError  string `json:"transportError,omitempty"`

	// RPS is the throughput, Requests / Duration.
	RPS float64 `json:"rps"`

	// Latency covers the requests that got a complete response.
	Latency Latency `json:"latency"`

	// StatusCounts counts responses by HTTP status, Codes by envelope
	// code; a response without a "code" member is in neither Codes nor
	// Successes.
	StatusCounts map[int]int64    `json:"statusCounts"`
	Codes        map[string]int64 `json:"codes"`

	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Unenveloped counts the responses without an envelope code: not the server's answer but
// a proxy's (nginx's 502 or 504 when a node died or stalled with the request), so their
// outcome is as unknown as a transport error's.
func (s *Summary) Unenveloped() int64 {
	n := s.Requests - s.TransportErrors
	for _, c := range s.Codes {
		n -= c
	}
	return max(n, 0) // a summary made up of codes alone has no requests
}

// Latency is a latency distribution in milliseconds. Percentiles are
// nearest-rank within 0.1% (the HdrHistogram's three significant digits);
// Min, Max and Mean are exact.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// summarize merges the workers' tallies.
func summarize(o Options, workers []*worker, start, end time.Time) Summary {
	s := Summary{
		URL:          o.URL,
		Method:       o.Method,
		Concurrency:  o.Concurrency,
		Duration:     end.Sub(start).Seconds(),
		StatusCounts: make(map[int]int64),
		Codes:        make(map[string]int64),
		Start:        start,
		End:          end,
	}
	var h histogram
	for _, w := range workers {
		h.merge(&w.hist)
		s.Requests += w.done.Load()
		s.Errors += w.errs.Load()
		s.Successes += w.successes
		s.TransportErrors += w.transport
		if s.TransportError == "" {
			s.TransportError = w.errSample
		}
		for status, n := range w.status {
			if n > 0 {
				s.StatusCounts[status] += n
			}
		}
		for code, n := range w.codes {
			s.Codes[code] += *n
		}
	}
	if s.Duration > 0 {
		s.RPS = float64(s.Requests) / s.Duration
	}
	s.Latency = Latency{
		Min:  ms(time.Duration(h.min)),
		Mean: ms(h.mean()),
		P50:  ms(h.quantile(0.50)),
		P90:  ms(h.quantile(0.90)),
		P95:  ms(h.quantile(0.95)),
		P99:  ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)),
		Max:  ms(time.Duration(h.max)),
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteJSON writes s as indented JSON, for scripts and for comparing runs.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// String renders s as a table for people.
func (s Summary) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "target\t%s %s\n", s.Method, s.URL)
	fmt.Fprintf(tw, "concurrency\t%d\n", s.Concurrency)
	fmt.Fprintf(tw, "duration\t%.2fs\n", s.Duration)
	fmt.Fprintf(tw, "requests\t%d\t%.1f/s\n", s.Requests, s.RPS)
	fmt.Fprintf(tw, "successes\t%d\t%s\n", s.Successes, percent(s.Successes, s.Requests))
	fmt.Fprintf(tw, "errors\t%d\t%s\n", s.Errors, percent(s.Errors, s.Requests))
	if s.TransportErrors > 0 {
		fmt.Fprintf(tw, "transport errors\t%d\t%s\n", s.TransportErrors, s.TransportError)
	}
	l := s.Latency
	fmt.Fprintf(tw, "latency ms\tmin %.3f\tmean %.3f\tmax %.3f\n", l.Min, l.Mean, l.Max)
	fmt.Fprintf(tw, "\tp50 %.3f\tp90 %.3f\tp95 %.3f\n", l.P50, l.P90, l.P95)
	fmt.Fprintf(tw, "\tp99 %.3f\tp99.9 %.3f\n", l.P99, l.P999)
	for i, status := range slices.Sorted(maps.Keys(s.StatusCounts)) {
		label := ""
		if i == 0 {
			label = "status"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\n", label, status, s.StatusCounts[status])
	}
	for i, code := range slices.Sorted(maps.Keys(s.Codes)) {
		label := ""
		if i == 0 {
			label = "codes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", label, strconv.Quote(code), s.Codes[code])
	}
	tw.Flush()
	return b.String()
}

func percent(n, of int64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}
