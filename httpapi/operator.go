package httpapi

import (
	"net/http"
	"net/http/pprof"
	"path"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// operatorPrefixes start the routes that the same-origin console calls with the admin
// token. They carry no CORS headers, preflights included, so that no page of another
// origin is invited to call them (API.md).
var operatorPrefixes = []string{adminPrefix, "/api/v1/raffle/dcc/", "/api/v1/raffle/erp/"}

// isOperatorPath reports whether p, cleaned as the mux cleans it, is under an operator
// prefix.
func isOperatorPath(p string) bool {
	if strings.HasPrefix(p, "/") && !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		// Already clean, as every request's path but a crafted one is, save perhaps a
		// trailing slash: path.Clean would return it unchanged (or without that slash),
		// so it is matched as is, without the two strings the long way builds. The
		// prefixes end in a slash: a path one slash short of one is that prefix cleaned.
		for _, prefix := range operatorPrefixes {
			if strings.HasPrefix(p, prefix) || p == prefix[:len(prefix)-1] {
				return true
			}
		}
		return false
	}
	clean := path.Clean("/" + p)
	if !strings.HasSuffix(clean, "/") {
		clean += "/"
	}
	for _, prefix := range operatorPrefixes {
		if strings.HasPrefix(clean, prefix) {
			return true
		}
	}
	return false
}

// Operator returns the handler of the operator listener, which belongs on a loopback or
// internal address and never on the public port: GET /metrics (when Options.Registry is
// set), the profiler under /debug/pprof/, and /healthz and /readyz as the API port serves
// them for load balancers.
func (s *Server) Operator() http.Handler {
	mux := http.NewServeMux()
	if s.opts.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}
