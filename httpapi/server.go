package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
	"github.com/bigmarket/bigmarket/web"
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
	RedPackets redPackets // nil: the red packet endpoints are not served
	Rains      rains      // nil: the rain endpoints are not served
	Stock      stockAdder // nil: admin/stock/add is not served
	// AwardRecords serves activity/query_user_award_record (with Activities); nil: not served.
	AwardRecords awardRecords
	// Gate serves the activity settings, the signed draw paths and their check on every
	// draw; nil: those endpoints are not served and every draw is plain.
	Gate drawGate
	// DeadLetters lists and replays the broker's dead letters; nil: admin/dlq is not served.
	DeadLetters deadLetters
	// CreditSettlers are the credit green channel's sources (credit awards, credit
	// rebates), applied in order before every credit read.
	CreditSettlers []Settler
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
	// Guard is the front line of the routes named by GuardedRoutes; nil: none.
	Guard frontLine
	// GuardedRoutes name the user endpoints behind the guard, as "activity/draw" (the
	// _by_token variant included); nil means DefaultGuardedRoutes.
	GuardedRoutes []string
	// TrustedProxies are the peers whose X-Forwarded-For names the client the per-IP
	// limit counts (IPLimitedRoutes); the zero value trusts none.
	TrustedProxies guard.Proxies
	// DCC stores dynamic settings for every node (dcc/update_config); nil, or a nil
	// Guard, does not serve the dcc endpoints.
	DCC dccStore
	// ArmoryNeedsAdmin puts the two armory GETs and the armory's test draw random_raffle,
	// which spends real stock, behind the admin token (production mode).
	ArmoryNeedsAdmin bool
	// Ready reports whether SQL, Redis and the broker are reachable (GET /readyz).
	Ready    func(ctx context.Context) error
	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics; nil means none are served
	// MaxBodyBytes bounds request bodies; default 64 KiB.
	MaxBodyBytes int64
	// Web serves the pages (web.Pages) and /static/ on the API's origin; nil: none.
	Web http.Handler
	// Console reads the operator console's views (admin/strategy, admin/user,
	// admin/redpacket/packets, admin/reconcile); nil: those are not served.
	Console console
	// DemoTokens serves POST /api/v1/demo/token, which mints a user token for any user
	// id (demo mode only; it needs JWTSecret). Off, the path answers as unknown ones do.
	DemoTokens bool
	// EmbedOrigins are the origins allowed to embed the pages and hand them a user token
	// by postMessage (GET /api/v1/web/config tells the pages).
	EmbedOrigins []string
	// NodeID names this node in admin/stats, whose numbers are this node's.
	NodeID string
	// Gauges reads the stock, backlogs and dead letters admin/stats shows (at most once
	// a second, timed by Now); nil: admin/stats shows empty lists and nulls for them.
	Gauges gaugeReader
}

// Server is the HTTP API.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	nextID   atomic.Uint64
	// guardedRoutes is Options.GuardedRoutes as a set.
	guardedRoutes map[string]bool
	// ips is the per-IP limit of IPLimitedRoutes: Options.Guard's, when it has one.
	ips ipLimiter
	// reconciling is set while admin/reconcile runs: one at a time per node.
	reconciling atomic.Bool
	// live counts the answers of the last seconds and gauges caches what Options.Gauges
	// read, for admin/stats.
	live   liveStats
	gauges gaugeCache
}

// New returns the API handler with every route registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), guardedRoutes: map[string]bool{}}
	if opts.GuardedRoutes == nil {
		opts.GuardedRoutes = DefaultGuardedRoutes
	}
	for _, name := range opts.GuardedRoutes {
		s.guardedRoutes[name] = true
	}
	s.ips, _ = opts.Guard.(ipLimiter)
	if opts.Registry != nil {
		s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bigmarket_http_requests_total", Help: "API requests by route and response code.",
		}, []string{"route", "code"})
		s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bigmarket_http_request_duration_seconds", Help: "API latency by route.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
		}, []string{"route"})
		opts.Registry.MustRegister(s.requests, s.latency)
	}
	// The metrics and the profiler are served by Operator, on another listener.
	s.mux.HandleFunc("GET /healthz", s.healthz)
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
	s.handle("POST "+raffle+"strategy/random_raffle", armory(s.system(s.randomRaffle)))
	// user registers a user endpoint: the plain variant (userId in the request) when
	// those are on, and the _by_token variant when tokens are configured, which stays on
	// when the plain ones are off. The guard sits inside the token check, so it limits
	// the token's user, never one named in the body.
	tokens := len(opts.JWTSecret) > 0
	user := func(prefix, path string, withToken bool, h handlerFunc) {
		p := "POST " + prefix + path
		if opts.PlainUserEndpoints {
			s.handle(p, s.perIP(p, s.guarded(p, h)))
		}
		if tokens && withToken {
			s.handle(p+"_by_token", s.perIP(p, s.byToken(s.guarded(p, h))))
		}
	}
	if opts.Activities != nil {
		s.handle("POST "+raffle+"activity/query_sku_product_list_by_activity_id", s.querySKUProducts)
		s.handle("GET "+raffle+"activity/query_stage_activity_id", s.queryStageActivityID)
		s.handle("POST "+adminPrefix+"activity/recharge", s.admin(s.recharge))
		s.handle("POST "+adminPrefix+"activity/provision", s.admin(s.provision))
		s.handle("GET "+raffle+"erp/query_raffle_activity_stage_list", s.admin(s.queryStageList))
		s.handle("GET "+raffle+"erp/query_user_raffle_order", s.admin(s.queryUserRaffleOrders))
		user(raffle, "activity/query_user_activity_account", true, s.queryUserActivityAccount)
		if opts.AwardRecords != nil {
			user(raffle, "activity/query_user_award_record", true, s.queryUserAwardRecord)
		}
	}
	if opts.Raffles != nil {
		s.handle("GET "+raffle+"activity/armory", armory(s.activityArmory))
		s.handle("POST "+raffle+"erp/update_stage_activity_2_active", s.admin(s.activateStage))
		user(raffle, "activity/draw", true, s.draw)
		user(raffle, "strategy/query_raffle_award_list", true, s.queryAwardList)
		user(raffle, "strategy/query_raffle_strategy_rule_weight", true, s.queryRuleWeights)
		if opts.Gate != nil {
			s.handle("GET "+adminPrefix+"activity/settings", s.admin(s.queryActivitySettings))
			s.handle("POST "+adminPrefix+"activity/settings", s.admin(s.saveActivitySettings))
			if tokens {
				// A path is handed to a signed-in user and bound to them: both ends take
				// the token. The signed draw is behind the guard as the draw is.
				s.handle("GET "+raffle+"activity/draw_path_by_token", s.byToken(s.drawPath))
				s.handle("POST "+raffle+"activity/draw/{signature}", s.perIP("POST "+raffle+"activity/draw", s.byToken(s.guarded("POST "+raffle+"activity/draw", s.signedDraw))))
			}
		}
	}
	if opts.Credits != nil {
		user(raffle, "activity/query_user_credit_account", true, s.queryUserCreditAccount)
		user(raffle, "activity/credit_pay_exchange_sku", true, s.creditPayExchangeSKU)
	}
	if opts.Rebates != nil {
		s.handle("POST /api/v1/rebate/behavior", s.behaviorRebate)
		user(raffle, "activity/calendar_sign_rebate", true, s.calendarSignRebate)
		user(raffle, "activity/is_calendar_sign_rebate", true, s.isCalendarSignRebate)
	}
	if opts.RedPackets != nil {
		user("/api/v1/", "redpacket/send", true, s.sendRedPacket)
		user("/api/v1/", "redpacket/grab", true, s.grabRedPacket)
		s.handle("POST "+adminPrefix+"redpacket/send", s.admin(s.sendCampaignPacket))
		s.handle("GET /api/v1/redpacket/detail", s.redPacketDetail)
		if opts.Credits != nil {
			if opts.PlainUserEndpoints {
				s.handle("GET /api/v1/redpacket/wallet", s.wallet)
			}
			if tokens {
				s.handle("GET /api/v1/redpacket/wallet_by_token", s.byToken(s.wallet))
			}
		}
	}
	if opts.Rains != nil {
		// A tap is not behind the per-user limiter (taps are expected to be fast, and a
		// miss costs no Redis round trip): rain/grab is not a guardable route.
		user("/api/v1/", "rain/grab", true, s.rainGrab)
		s.handle("GET /api/v1/rain/sessions", s.rainSessions)
		s.handle("GET /api/v1/rain/sessions/{id}", s.rainSession)
		if opts.PlainUserEndpoints {
			s.handle("GET /api/v1/rain/wins", s.rainWins)
		}
		if tokens {
			s.handle("GET /api/v1/rain/wins_by_token", s.byToken(s.rainWins))
		}
		s.handle("POST "+adminPrefix+"rain/sessions", s.admin(s.createRainSession))
		s.handle("GET "+adminPrefix+"rain/sessions/{id}", s.admin(s.rainReport))
		s.handle("PUT "+adminPrefix+"rain/sessions/{id}/quota", s.admin(s.updateRainQuota))
		s.handle("GET "+adminPrefix+"rain/sessions", s.admin(s.adminRainSessions))
	}
	if opts.DemoTokens && tokens {
		s.handle("POST /api/v1/demo/token", s.demoToken)
	}
	if opts.Web != nil {
		// "GET" patterns serve HEAD too. "/" is mounted as "/{$}", the root alone: as a
		// pattern of its own it would catch every unknown path, which stay the 404 envelope.
		for page := range web.Pages {
			if page == "/" {
				page = "/{$}"
			}
			s.mux.Handle("GET "+page, opts.Web)
		}
		s.mux.Handle("GET /static/", opts.Web)
		s.handle("GET /api/v1/web/config", s.webConfig)
	}
	if opts.Stock != nil {
		s.handle("POST "+adminPrefix+"stock/add", s.admin(s.addStock))
	}
	if opts.Console != nil {
		s.handle("GET "+adminPrefix+"strategy/{id}", s.admin(s.adminStrategy))
		s.handle("GET "+adminPrefix+"user/{userId}", s.admin(s.adminUser))
		s.handle("GET "+adminPrefix+"redpacket/packets", s.admin(s.adminRedPackets))
		s.handle("POST "+adminPrefix+"reconcile", s.admin(s.adminReconcile))
	}
	s.handle("GET "+adminPrefix+"stats", s.admin(s.adminStats))
	if opts.DeadLetters != nil {
		s.handle("GET "+adminPrefix+"dlq", s.admin(s.listDeadLetters))
		s.handle("POST "+adminPrefix+"dlq/replay", s.admin(s.replayDeadLetters))
	}
	if opts.Guard != nil && opts.DCC != nil {
		s.handle("GET "+raffle+"dcc/update_config", s.admin(s.updateConfig))
		s.handle("GET "+raffle+"dcc/query_config", s.admin(s.queryConfig))
		// GET as big-market has it; POST too, as a reset changes state.
		s.handle("GET "+raffle+"dcc/reset_config", s.admin(s.resetConfig))
		s.handle("POST "+raffle+"dcc/reset_config", s.admin(s.resetConfig))
		s.handle("POST "+adminPrefix+"guard/unblacklist", s.admin(s.unblacklist))
		s.handle("POST "+adminPrefix+"guard/unblacklist_ip", s.admin(s.unblacklistIP))
		s.handle("GET "+adminPrefix+"settings", s.admin(s.adminSettings))
	}
	// One catch-all serves unknown admin paths too: a method-less "/api/v1/admin/" pattern
	// would conflict with the "OPTIONS /api/" preflight.
	s.handle("/api/", s.notFound)
	s.handle("/", s.notFound) // /metrics and /debug/ too: they live on the operator listener
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

// anyOrigin is the value of Access-Control-Allow-Origin.
var anyOrigin = []string{"*"}

// ServeHTTP adds CORS headers, except on the operator routes, and serves the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isOperatorPath(r.URL.Path) {
		h := w.Header()
		h["Access-Control-Allow-Origin"] = anyOrigin // shared as jsonContentType is
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
			h.Set("Access-Control-Max-Age", "86400")
		}
	}
	s.mux.ServeHTTP(w, r)
}

// handlerFunc returns a response's data or an error that classify turns into a code.
type handlerFunc func(r *http.Request) (any, error)

// handle registers a JSON endpoint: body limit, panic recovery, envelope, logs, metrics
// and the live counts of admin/stats.
func (s *Server) handle(pattern string, h handlerFunc) {
	var latency prometheus.Observer
	if s.latency != nil {
		latency = s.latency.WithLabelValues(pattern) // once per route, not per request
	}
	kind := statKindOf(pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		data, err := s.call(h, r)
		env := envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: data}
		status := http.StatusOK
		if err != nil {
			ae := classify(err)
			status, env.Code, env.Info, env.Data = ae.status, ae.code, ae.info, ae.data
			if env.Info == "" {
				env.Info = infos[ae.code]
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bigmarket"`)
			}
			if ae.retryAfter > 0 {
				w.Header().Set("Retry-After", retryAfterHeader(ae.retryAfter))
			}
			if ae.code == CodeUnknown || status >= 500 {
				s.opts.Logger.Error("request failed", "request_id", s.requestID(r), "route", r.Pattern, "err", ae.err)
			}
		}
		if pre, ok := env.Data.(*encodedEnvelope); ok {
			// Only a success carries it: an error's data is the error's.
			w.Header()["Content-Type"] = jsonContentType
			w.WriteHeader(status)
			_, _ = w.Write(pre.b)
		} else {
			writeJSON(w, status, env)
		}
		end := time.Now()
		s.live.record(kind, env.Code, end, end.Sub(start))
		if s.requests != nil {
			s.requests.WithLabelValues(r.Pattern, string(env.Code)).Inc()
			latency.Observe(end.Sub(start).Seconds())
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

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, envelope{Code: CodeSuccess, Info: infos[CodeSuccess], Data: "up"})
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

// decodeJSON reads the body as one JSON object into v. Every malformed body is a 0002
// that names the problem (a byte offset, a field, the size limit) in words of JSON, never
// Go's. Unknown fields are ignored: big-market's front end sends some.
func decodeJSON(r *http.Request, v any) error {
	body, err := readBody(r.Body, r.ContentLength)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return badParam(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return badParam(http.StatusBadRequest, "request body could not be read")
	}
	return decodeBody(body, v)
}

// exactBodyBytes bounds the buffer readBody sizes by the declared length up front.
const exactBodyBytes = 16 << 10

// readBody reads the whole body, as io.ReadAll does: to its end (io.EOF), failing with
// any other error. A body that declares a small length is read into a buffer of that
// length plus one byte: a tap's body is a few dozen bytes, where io.ReadAll starts at 512
// and so allocates ten times what the body needs on every request. A body longer than
// it declared (which net/http never hands over, but a handler called directly may get)
// fills the extra byte and is read on to its end.
func readBody(body io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 || declared > exactBodyBytes {
		return io.ReadAll(body)
	}
	buf := make([]byte, declared+1)
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	rest, err := io.ReadAll(body)
	return append(buf, rest...), err
}

// decodeBody is decodeJSON once the body is read: syntax first, then that the body is one
// object, then the fields' types.
func decodeBody(body []byte, v any) error {
	// The common case, one well-formed object, costs one json.Unmarshal, which checks
	// the whole body's syntax before it fills v (a second value after the object is a
	// syntax error to it). Whatever it refuses goes the long way below, which words the
	// problem; the long way's checks accept nothing this refuses.
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '{' && json.Unmarshal(body, v) == nil {
		return nil
	}
	return decodeBodyWorded(body, v)
}

// decodeBodyWorded is decodeBody the long way, which finds the words for what is wrong.
func decodeBodyWorded(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return badParam(http.StatusBadRequest, "request body is empty")
		}
		return syntaxError(err)
	}
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		if err := dec.Decode(new(json.RawMessage)); err != nil {
			return syntaxError(err)
		}
		return badParam(http.StatusBadRequest, "request body holds more than one JSON value")
	}
	if raw[0] != '{' {
		return badParam(http.StatusBadRequest, "request body must be a JSON object, not %s", jsonKind(raw[0]))
	}
	err := json.Unmarshal(raw, v)
	var typeErr *json.UnmarshalTypeError
	var invalid *json.InvalidUnmarshalError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return badParam(http.StatusBadRequest, "%s", typeErrorInfo(typeErr, reflect.TypeOf(v)))
	case errors.As(err, &invalid):
		return fmt.Errorf("decode request body: %w", err) // a bug of the handler: 0001
	default:
		return badParam(http.StatusBadRequest, "request body has a malformed value")
	}
}

// syntaxError words a decoding error of malformed JSON.
func syntaxError(err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return badParam(http.StatusBadRequest, "malformed JSON at byte %d", syntax.Offset)
	}
	return badParam(http.StatusBadRequest, "malformed JSON: unexpected end of body")
}

// jsonKind names the kind of the JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// typeErrorInfo says which field of a body decoded into a t has the wrong type and what
// it must be, by JSON names: "field activityId must be an integer, not a boolean".
func typeErrorInfo(e *json.UnmarshalTypeError, t reflect.Type) string {
	subject := "request body"
	if e.Field != "" {
		subject = "field " + jsonPath(t, e.Field)
	}
	switch {
	case e.Type == idType:
		return subject + " must be an integer, not " + e.Value // ID's own wording
	case e.Type == nil:
		return subject + " has the wrong type"
	}
	want := typePhrase(e.Type)
	got, _, _ := strings.Cut(e.Value, " ") // "number 1.5" is a number
	numeric := strings.HasSuffix(want, "integer") || want == "a number"
	if noun := jsonNouns[got]; noun != "" && (got != "number" || !numeric) {
		return subject + " must be " + want + ", not " + noun
	}
	return subject + " must be " + want // a number that does not fit: a fraction, or too large
}

// jsonNouns name the kinds of JSON value as UnmarshalTypeError.Value starts them.
var jsonNouns = map[string]string{
	"number": "a number", "string": "a string", "bool": "a boolean", "array": "an array", "object": "an object",
}

// jsonPath drops from a type error's field path the Go names of the embedded structs that
// the decoder lists on the way ("userSKURequest.sku"): the client sent only "sku".
func jsonPath(t reflect.Type, path string) string {
	var out []string
	for _, name := range strings.Split(path, ".") {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		var next reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				f := t.Field(i)
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.Anonymous && tag == "" && f.Name == name {
					next, name = f.Type, ""
					break
				}
				if tag == name || (tag == "" && f.Name == name) {
					next = f.Type
					break
				}
			}
		}
		if name != "" {
			out = append(out, name)
		}
		t = next
	}
	return strings.Join(out, ".")
}

// typePhrase names what a JSON value must be to decode into t.
func typePhrase(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
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
