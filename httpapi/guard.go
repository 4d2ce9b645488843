package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
)

// frontLine is what the guarded endpoints need of the guard.
type frontLine interface {
	Do(ctx context.Context, userID string, fn func(ctx context.Context) error) error
	DoSystem(ctx context.Context, fn func(ctx context.Context) error) error
	Degraded() bool
	Settings() guard.Settings
}

// dccStore writes dynamic settings and the blacklist for every node.
type dccStore interface {
	PutSetting(ctx context.Context, key, value string) error
	DeleteSetting(ctx context.Context, key string) error
	RemoveBlacklist(ctx context.Context, userID string) error
	RemoveIPBlacklist(ctx context.Context, key netip.Addr) error
}

// ipLimiter is the per-IP limit of the front line (guard.Guard has it).
type ipLimiter interface {
	IPLimits() bool
	AdmitIP(addr netip.Addr) (guard.IPAdmission, error)
	EndIP(a guard.IPAdmission, err error)
}

// IPLimitedRoutes are the endpoints behind the per-IP limit: those that spend something
// (quota, stock, credit, a packet's items, a rain's prizes) or write for a user, in every
// variant (plain, _by_token, the signed draw). Reads, pages and static files are not:
// a page load makes several reads, which would force a limit too loose to hold the
// spending calls back, and they take nothing (nginx's limit_req and cache shield them).
var IPLimitedRoutes = []string{
	"activity/draw", "activity/credit_pay_exchange_sku", "activity/calendar_sign_rebate",
	"redpacket/send", "redpacket/grab", "rain/grab",
}

// perIP puts h behind the per-IP limit when its route (named as guardedName names it) is
// one of IPLimitedRoutes: outermost, before the token is checked, the body read or the
// user's limits asked, so a flooding address costs one lookup in memory. While the limit
// is off it costs an atomic load: not even the client's address is worked out.
func (s *Server) perIP(pattern string, h handlerFunc) handlerFunc {
	if s.ips == nil || !slices.Contains(IPLimitedRoutes, guardedName(pattern)) {
		return h
	}
	return func(r *http.Request) (any, error) {
		if !s.ips.IPLimits() {
			return h(r)
		}
		addr, ok := s.opts.TrustedProxies.ClientIP(r.RemoteAddr, r.Header["X-Forwarded-For"])
		if !ok {
			return h(r) // not an IP connection (a test's or a socket's): nothing to count by
		}
		a, err := s.ips.AdmitIP(addr)
		if err != nil {
			return nil, err
		}
		data, err := h(r)
		s.ips.EndIP(a, err)
		return data, err
	}
}

// DefaultGuardedRoutes are the endpoints behind the front line when Options names none.
var DefaultGuardedRoutes = []string{"activity/draw"}

// guardedName is the route name a pattern is configured by: "POST
// /api/v1/raffle/activity/draw_by_token" is "activity/draw", so a token variant is guarded
// with its plain twin.
func guardedName(pattern string) string {
	_, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimPrefix(path, "/api/v1/raffle/")
	path = strings.TrimPrefix(path, "/api/v1/")
	return strings.TrimSuffix(path, "_by_token")
}

// guarded puts h behind the front line when its route is configured so: the degrade
// switch, the user's limits and blacklist, the time budget and the breaker.
func (s *Server) guarded(pattern string, h handlerFunc) handlerFunc {
	if s.opts.Guard == nil || !s.guardedRoutes[guardedName(pattern)] {
		return h
	}
	return func(r *http.Request) (any, error) {
		if s.opts.Guard.Degraded() {
			return nil, guard.ErrDegraded // at once: nothing read, nothing touched
		}
		userID, err := peekUser(r)
		if err != nil {
			return nil, err
		}
		if userID == "" || activity.CheckUserID(userID) != nil {
			return h(r) // the handler refuses the request with its own 0002
		}
		var data any
		err = s.opts.Guard.Do(r.Context(), userID, func(ctx context.Context) error {
			var herr error
			data, herr = h(r.WithContext(ctx))
			return herr
		})
		if err != nil {
			return nil, err // data may still be written by a call past its budget: not read
		}
		return data, nil
	}
}

// system puts h, an endpoint no user calls (random_raffle), behind the degrade switch,
// the time budget and the breaker; it has no user to limit.
func (s *Server) system(h handlerFunc) handlerFunc {
	if s.opts.Guard == nil {
		return h
	}
	return func(r *http.Request) (any, error) {
		var data any
		err := s.opts.Guard.DoSystem(r.Context(), func(ctx context.Context) error {
			var herr error
			data, herr = h(r.WithContext(ctx))
			return herr
		})
		if err != nil {
			return nil, err
		}
		return data, nil
	}
}

// peekUser finds the user a request is for before its handler runs: the token's, else
// the userId of a JSON body, of an urlencoded body or of the query string. The body is
// read into memory (it is bounded) and put back for the handler, whatever it holds.
func peekUser(r *http.Request) (string, error) {
	if u, ok := tokenUser(r.Context()); ok {
		return u, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", badParam(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return "", badParam(http.StatusBadRequest, "request body could not be read")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	var body struct {
		UserID string `json:"userId"`
	}
	if json.Unmarshal(b, &body) == nil && body.UserID != "" {
		return body.UserID, nil // a malformed body is the handler's to refuse
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(b)); err == nil && form.Has("userId") {
			return form.Get("userId"), nil
		}
	}
	return r.URL.Query().Get("userId"), nil
}

// updateConfig is big-market's dcc/update_config: it validates the key and value and
// stores them for every node, which applies them within a second.
func (s *Server) updateConfig(r *http.Request) (any, error) {
	q := r.URL.Query()
	key, value := q.Get("key"), q.Get("value")
	if key == "" || value == "" {
		return nil, badParam(http.StatusOK, "key and value are required")
	}
	if !guard.Known(key) {
		return nil, badParam(http.StatusOK, "unknown key %q; known keys: %s", key, strings.Join(guard.Keys, ", "))
	}
	if _, err := s.opts.Guard.Settings().With(key, value); err != nil {
		return nil, badParam(http.StatusOK, "%s", strings.TrimSuffix(err.Error(), ": "+guard.ErrBadSetting.Error()))
	}
	if err := s.opts.DCC.PutSetting(r.Context(), key, value); err != nil {
		return nil, err
	}
	s.opts.Logger.Info("dynamic setting updated", "request_id", s.requestID(r), "key", key, "value", value)
	return true, nil
}

// resetConfig removes a setting written through update_config, so that every node goes
// back to the value of its own config.
func (s *Server) resetConfig(r *http.Request) (any, error) {
	key := r.URL.Query().Get("key")
	if !guard.Known(key) {
		return nil, badParam(http.StatusOK, "unknown key %q; known keys: %s", key, strings.Join(guard.Keys, ", "))
	}
	if err := s.opts.DCC.DeleteSetting(r.Context(), key); err != nil {
		return nil, err
	}
	s.opts.Logger.Info("dynamic setting reset", "request_id", s.requestID(r), "key", key)
	return true, nil
}

// unblacklist lifts a user's blacklisting on every node (customer service).
func (s *Server) unblacklist(r *http.Request) (any, error) {
	var req struct {
		UserID string `json:"userId"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := checkUserID(req.UserID); err != nil {
		return nil, err
	}
	if err := s.opts.DCC.RemoveBlacklist(r.Context(), req.UserID); err != nil {
		return nil, err
	}
	s.opts.Logger.Info("blacklisting lifted", "request_id", s.requestID(r), "user_id", req.UserID)
	return true, nil
}

// unblacklistIP lifts a client IP's blacklisting on every node: an address, or an IPv6
// /64 (the unit IPv6 clients are limited by; any address in it names it too).
func (s *Server) unblacklistIP(r *http.Request) (any, error) {
	var req struct {
		IP string `json:"ip"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.IP == "" {
		return nil, badParam(http.StatusOK, "ip is required")
	}
	key, err := guard.ParseIPKey(req.IP)
	if err != nil {
		return nil, badParam(http.StatusOK, "ip %s", err)
	}
	if err := s.opts.DCC.RemoveIPBlacklist(r.Context(), key); err != nil {
		return nil, err
	}
	s.opts.Logger.Info("IP blacklisting lifted", "request_id", s.requestID(r), "ip", guard.FormatIPKey(key))
	return true, nil
}

// queryConfig answers the settings in force on this node.
func (s *Server) queryConfig(*http.Request) (any, error) {
	return s.opts.Guard.Settings().Map(), nil
}

// defaulter tells the settings of the node's own config (guard.Guard does).
type defaulter interface {
	Defaults() guard.Settings
}

// settingView is one dynamic setting in admin/settings: the value in force on this node,
// the value of its config (what dcc/reset_config goes back to), and whether they differ.
type settingView struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	Default    string `json:"default"`
	Overridden bool   `json:"overridden"`
}

// adminSettings answers GET admin/settings: every dynamic setting (dcc/query_config's)
// with its default. Changes go through dcc/update_config and dcc/reset_config.
func (s *Server) adminSettings(*http.Request) (any, error) {
	inForce := s.opts.Guard.Settings()
	defaults := inForce
	if d, ok := s.opts.Guard.(defaulter); ok {
		defaults = d.Defaults()
	}
	out := make([]settingView, 0, len(guard.Keys))
	for _, k := range guard.Keys {
		v, _ := inForce.Value(k)
		def, _ := defaults.Value(k)
		out = append(out, settingView{Key: k, Value: v, Default: def, Overridden: v != def})
	}
	return out, nil
}

// IsSystemFailure reports whether err is answered by a system answer — 0001 (a store
// down, an internal error), 0006 (over budget), 0009 (an outcome or a SKU's stock not
// known yet) or ERR_RP_004 (a red packet grab not yet durable, or its packet being
// rebuilt) — rather than an answer to the request (bad input, quota exhausted). The
// breaker counts only these, and a user whose last call got one is not blacklisted for
// retrying it.
func IsSystemFailure(err error) bool {
	if err == nil || errors.Is(err, gate.ErrBusy) {
		// A user's own concurrent draw in a one-win activity answers 0009 too, but says
		// nothing of the system's health: one user's burst must not open the breaker.
		return false
	}
	switch classify(err).code {
	case CodeUnknown, CodeTimeout, CodeBusy, CodeRedPacketRetry:
		return true
	}
	return false
}

// GuardableRoutes are the user endpoints that can be put behind the guard.
var GuardableRoutes = []string{
	"activity/draw", "activity/query_user_activity_account", "strategy/query_raffle_award_list",
	"strategy/query_raffle_strategy_rule_weight", "activity/query_user_credit_account",
	"activity/credit_pay_exchange_sku", "activity/calendar_sign_rebate", "activity/is_calendar_sign_rebate",
	"redpacket/send", "redpacket/grab",
}
