package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bigmarket/bigmarket/strategy"
)

// strategies is what the strategy endpoints need of the engine.
type strategies interface {
	Armory(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
	Draw(ctx context.Context, in strategy.Input) (strategy.Result, error)
}

// Options configures the API.
type Options struct {
	Strategies strategies
	Activities activities // nil: the activity endpoints are not served
	Raffles    raffles    // nil: the draw, armory and award view endpoints are not served
	Credits    credits    // nil: the credit endpoints are not served
	Rebates    rebates    // nil: the sign-in and behaviour rebate endpoints are not served
	// AppTokens are the service-to-service tokens by app id (the rebate endpoint).
	AppTokens map[string]string
	// AdminToken is the bearer token of everything under /api/v1/admin/; empty refuses
	// every admin request.
	AdminToken string
	// PlainUserEndpoints serves the endpoints that take the userId from the request body;
	// production turns them off and accepts only the token variants.
	PlainUserEndpoints bool
	// JWTSecret is the HS256 key of the user tokens of the _by_token endpoints, whose
	// openId claim names the user; empty: those endpoints are not served.
	JWTSecret []byte
	// Now is the clock that judges token expiry; nil means time.Now.
	Now func() time.Time
	// ArmoryNeedsAdmin puts the two armory GETs behind the admin token (production mode).
	ArmoryNeedsAdmin bool
	// Ready reports whether SQL, Redis and the broker are reachable (GET /readyz).
	Ready    func(ctx context.Context) error
	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics; nil means none are served
	// MaxBodyBytes bounds request bodies; default 64 KiB.
	MaxBodyBytes int64
}

// Server is the HTTP API.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	nextID   atomic.Uint64
}

// New returns the API handler with every route registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	if opts.Registry != nil {
		s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bigmarket_http_requests_total", Help: "API requests by route and response code.",
		}, []string{"route", "code"})
		s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bigmarket_http_request_duration_seconds", Help: "API latency by route.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
		}, []string{"route"})
		opts.Registry.MustRegister(s.requests, s.latency)
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: "up"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("OPTIONS /api/", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})

	const raffle = "/api/v1/raffle/"
	armory := func(h handlerFunc) handlerFunc {
		if opts.ArmoryNeedsAdmin {
			return s.admin(h)
		}
		return h
	}
	s.handle("GET "+raffle+"strategy/strategy_armory", armory(s.strategyArmory))
	s.handle("POST "+raffle+"strategy/random_raffle", s.randomRaffle)
	tokens := len(opts.JWTSecret) > 0 // the _by_token variants stay on when the plain ones are off
	if opts.Activities != nil {
		s.handle("POST "+raffle+"activity/query_sku_product_list_by_activity_id", s.querySKUProducts)
		s.handle("GET "+raffle+"activity/query_stage_activity_id", s.queryStageActivityID)
		s.handle("POST "+adminPrefix+"activity/recharge", s.admin(s.recharge))
		s.handle("GET "+raffle+"erp/query_raffle_activity_stage_list", s.admin(s.queryStageList))
		s.handle("GET "+raffle+"erp/query_user_raffle_order", s.admin(s.queryUserRaffleOrders))
		if opts.PlainUserEndpoints {
			s.handle("POST "+raffle+"activity/query_user_activity_account", s.queryUserActivityAccount)
		}
		if tokens {
			s.handle("POST "+raffle+"activity/query_user_activity_account_by_token", s.byToken(s.queryUserActivityAccount))
		}
	}
	if opts.Raffles != nil {
		s.handle("GET "+raffle+"activity/armory", armory(s.activityArmory))
		s.handle("POST "+raffle+"erp/update_stage_activity_2_active", s.admin(s.activateStage))
		if opts.PlainUserEndpoints {
			s.handle("POST "+raffle+"activity/draw", s.draw)
			s.handle("POST "+raffle+"strategy/query_raffle_award_list", s.queryAwardList)
			s.handle("POST "+raffle+"strategy/query_raffle_strategy_rule_weight", s.queryRuleWeights)
		}
		if tokens {
			s.handle("POST "+raffle+"activity/draw_by_token", s.byToken(s.draw))
			s.handle("POST "+raffle+"strategy/query_raffle_award_list_by_token", s.byToken(s.queryAwardList))
		}
	}
	if opts.Credits != nil {
		if opts.PlainUserEndpoints {
			s.handle("POST "+raffle+"activity/query_user_credit_account", s.queryUserCreditAccount)
			s.handle("POST "+raffle+"activity/credit_pay_exchange_sku", s.creditPayExchangeSKU)
		}
		if tokens {
			s.handle("POST "+raffle+"activity/query_user_credit_account_by_token", s.byToken(s.queryUserCreditAccount))
			s.handle("POST "+raffle+"activity/credit_pay_exchange_sku_by_token", s.byToken(s.creditPayExchangeSKU))
		}
	}
	if opts.Rebates != nil {
		s.handle("POST /api/v1/rebate/behavior", s.behaviorRebate)
		if opts.PlainUserEndpoints {
			s.handle("POST "+raffle+"activity/calendar_sign_rebate", s.calendarSignRebate)
			s.handle("POST "+raffle+"activity/is_calendar_sign_rebate", s.isCalendarSignRebate)
		}
		if tokens {
			s.handle("POST "+raffle+"activity/calendar_sign_rebate_by_token", s.byToken(s.calendarSignRebate))
			s.handle("POST "+raffle+"activity/is_calendar_sign_rebate_by_token", s.byToken(s.isCalendarSignRebate))
		}
	}
	// One catch-all serves unknown admin paths too: a method-less "/api/v1/admin/" pattern
	// would conflict with the "OPTIONS /api/" preflight.
	s.handle("/api/", s.notFound)
	return s
}

// notFound answers unknown endpoints with 404 and 0002; under /api/v1/admin/ only once the
// admin token is right, so that the admin surface is not probed without it.
func (s *Server) notFound(r *http.Request) (any, error) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		if err := s.checkAdmin(r); err != nil {
			return nil, err
		}
	}
	return nil, &apiError{status: http.StatusNotFound, code: CodeIllegalParam, info: "no such endpoint: " + r.Method + " " + r.URL.Path}
}

// ServeHTTP adds CORS headers and serves the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		h.Set("Access-Control-Max-Age", "86400")
	}
	s.mux.ServeHTTP(w, r)
}

// handlerFunc returns a response's data or an error that classify turns into a code.
type handlerFunc func(r *http.Request) (any, error)

// handle registers a JSON endpoint: body limit, panic recovery, envelope, logs, metrics.
func (s *Server) handle(pattern string, h handlerFunc) {
	var latency prometheus.Observer
	if s.latency != nil {
		latency = s.latency.WithLabelValues(pattern) // once per route, not per request
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		data, err := s.call(h, r)
		env := envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: data}
		status := http.StatusOK
		if err != nil {
			ae := classify(err)
			status, env.Code, env.Info, env.Data = ae.status, ae.code, ae.info, nil
			if env.Info == "" {
				env.Info = infos[ae.code]
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bigmarket"`)
			}
			if ae.code == CodeUnknown || status >= 500 {
				s.opts.Logger.Error("request failed", "request_id", s.requestID(r), "route", r.Pattern, "err", ae.err)
			}
		}
		writeJSON(w, status, env)
		if s.requests != nil {
			s.requests.WithLabelValues(r.Pattern, string(env.Code)).Inc()
			latency.Observe(time.Since(start).Seconds())
		}
	})
}

// call runs h and turns a panic into an internal error.
func (s *Server) call(h handlerFunc, r *http.Request) (data any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &apiError{status: http.StatusInternalServerError, code: CodeUnknown, err: errors.New("panic: " + slog.AnyValue(p).String())}
		}
	}()
	return h(r)
}

func (s *Server) requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 {
		return id
	}
	return strconv.FormatUint(s.nextID.Add(1), 36)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			s.opts.Logger.Warn("not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, envelope{Code: CodeUnknown, Info: "not ready"})
			return
		}
	}
	writeJSON(w, http.StatusOK, envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: "ready"})
}

// decodeJSON reads the body as one JSON value into v.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return badParam(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		case errors.Is(err, io.EOF):
			return badParam(http.StatusBadRequest, "request body is empty")
		default:
			return badParam(http.StatusBadRequest, "malformed JSON body")
		}
	}
	if dec.More() {
		return badParam(http.StatusBadRequest, "request body holds more than one JSON value")
	}
	return nil
}

// queryID reads a positive integer query parameter.
func queryID(r *http.Request, name string) (int64, error) {
	return positiveID(r.URL.Query().Get(name), name)
}

// positiveID parses a required positive integer parameter, answering 0002 when it is
// missing or malformed.
func positiveID(raw, name string) (int64, error) {
	if raw == "" {
		return 0, badParam(http.StatusOK, "%s is required", name)
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v <= 0 {
		return 0, badParam(http.StatusOK, "%s must be a positive integer", name)
	}
	return v, nil
}
