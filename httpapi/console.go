package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/money"
)

// console is what the operator console's views read (GET admin/strategy/{id}, admin/user/{userId},
// admin/redpacket/packets, POST admin/reconcile); app.Console is the one over the stores.
type console interface {
	Strategy(ctx context.Context, strategyID int64) (StrategyView, error)
	UserActivity(ctx context.Context, userID string, awards int) ([]AccountView, []AwardView, error)
	RedPackets(ctx context.Context, limit int) ([]RedPacketView, error)
	Reconcile(ctx context.Context, since time.Time) ([]ReconcileCheck, error)
}

// StrategyView is a strategy as the console shows it: its config and, per award, the stock
// left in Redis (nil when the award's counter is not there: the strategy is not armed).
type StrategyView struct {
	StrategyID  int64               `json:"strategyId"`
	Description string              `json:"description"`
	Armed       bool                `json:"armed"`
	Awards      []StrategyAwardView `json:"awards"`
	Rules       []StrategyRuleView  `json:"rules"`
}

// StrategyAwardView is one strategy_award row with its stock; Rate is the rate as stored
// (a decimal string).
type StrategyAwardView struct {
	AwardID       int    `json:"awardId"`
	AwardTitle    string `json:"awardTitle"`
	AwardSubtitle string `json:"awardSubtitle"`
	Sort          int    `json:"sort"`
	Rate          string `json:"rate"`
	RuleModels    string `json:"ruleModels"`
	StockTotal    int64  `json:"stockTotal"`
	// StockSurplus is strategy_award.award_count_surplus, the SQL copy of what is left.
	StockSurplus int64  `json:"stockSurplus"`
	StockLeft    *int64 `json:"stockLeft"`
}

// StrategyRuleView is one strategy_rule row; AwardID is omitted for a strategy-level rule.
type StrategyRuleView struct {
	RuleModel string `json:"ruleModel"`
	RuleValue string `json:"ruleValue"`
	AwardID   int    `json:"awardId,omitempty"`
}

// AccountView is a user's quota account in one activity (today's day and this month's rows).
type AccountView struct {
	ActivityID        int64 `json:"activityId"`
	TotalCount        int64 `json:"totalCount"`
	TotalCountSurplus int64 `json:"totalCountSurplus"`
	DayCount          int64 `json:"dayCount"`
	DayCountSurplus   int64 `json:"dayCountSurplus"`
	MonthCount        int64 `json:"monthCount"`
	MonthCountSurplus int64 `json:"monthCountSurplus"`
}

// AwardView is one award record of a user; AwardTime is unix milliseconds.
type AwardView struct {
	ActivityID int64  `json:"activityId"`
	OrderID    string `json:"orderId"`
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	AwardTime  int64  `json:"awardTime"`
	State      string `json:"state"`
}

// RedPacketView is one red packet in the console's list; times are unix milliseconds,
// Sender is empty for an operator (campaign) packet.
type RedPacketView struct {
	PacketID   string      `json:"packetId"`
	Sender     string      `json:"sender"`
	Kind       string      `json:"kind"` // "user" or "campaign"
	Total      money.Cents `json:"totalAmount"`
	Count      int         `json:"count"`
	Grabbed    int         `json:"grabbed"`
	Left       money.Cents `json:"left"`
	Status     string      `json:"status"`
	CreateTime int64       `json:"createTime"`
	ExpireTime int64       `json:"expireTime"`
}

// ReconcileCheck is one family of verify's checks: what it found (Discrepancies, at most
// maxDiscrepancies, Found counts them all), what it covered and what it could not check.
type ReconcileCheck struct {
	Name          string   `json:"name"`
	OK            bool     `json:"ok"`
	Found         int      `json:"found"`
	Discrepancies []string `json:"discrepancies"`
	Checked       string   `json:"checked"`
	Skipped       []string `json:"skipped"`
}

// MaxReconcileDiscrepancies bounds the discrepancies a check answers.
const MaxReconcileDiscrepancies = 100

// maxReconcileWindow bounds how far back admin/reconcile looks: a run reads every row of
// the window on this node's stores.
const maxReconcileWindow = 7 * 24 * time.Hour

// userView is the console's view of one user.
type userView struct {
	UserID           string        `json:"userId"`
	Credit           *money.Cents  `json:"credit"`
	Accounts         []AccountView `json:"accounts"`
	Awards           []AwardView   `json:"awards"`
	Blacklisted      bool          `json:"blacklisted"`
	BlacklistedUntil *int64        `json:"blacklistedUntil"`
}

// maxUserAwards is how many award records the user view lists, newest first.
const maxUserAwards = 50

// blacklister tells whether a user is blacklisted on this node (guard.Guard does).
type blacklister interface {
	BlacklistedUntil(userID string) (time.Time, bool)
}

// adminStrategy answers GET admin/strategy/{id}.
func (s *Server) adminStrategy(r *http.Request) (any, error) {
	id, err := positiveID(r.PathValue("id"), "strategyId")
	if err != nil {
		return nil, err
	}
	return s.opts.Console.Strategy(r.Context(), id)
}

// adminUser answers GET admin/user/{userId}: the credit available (after the green
// channel, as query_user_credit_account answers it), the quota accounts of the open
// activities, the newest award records and the blacklist state on this node.
func (s *Server) adminUser(r *http.Request) (any, error) {
	userID := r.PathValue("userId")
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	out := userView{UserID: userID}
	if s.opts.Credits != nil {
		a, err := s.account(r, userID)
		if err != nil {
			return nil, err
		}
		out.Credit = &a.Available
	}
	accounts, awards, err := s.opts.Console.UserActivity(r.Context(), userID, maxUserAwards)
	if err != nil {
		return nil, err
	}
	out.Accounts, out.Awards = nonNil(accounts), nonNil(awards)
	if b, ok := s.opts.Guard.(blacklister); ok {
		if until, on := b.BlacklistedUntil(userID); on {
			ms := until.UnixMilli()
			out.Blacklisted, out.BlacklistedUntil = true, &ms
		}
	}
	return out, nil
}

// adminRedPackets answers GET admin/redpacket/packets?limit=: the newest red packets.
func (s *Server) adminRedPackets(r *http.Request) (any, error) {
	limit := 50
	if raw := r.URL.Query().Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 500 {
			return nil, badParam(http.StatusOK, "limit must be an integer from 1 to 500")
		}
		limit = n
	}
	list, err := s.opts.Console.RedPackets(r.Context(), limit)
	if err != nil {
		return nil, err
	}
	return nonNil(list), nil
}

type reconcileRequest struct {
	// Since is RFC 3339 or unix milliseconds (a JSON string or number); empty is an hour ago.
	Since any `json:"since"`
}

type reconcileResponse struct {
	Since  int64            `json:"since"`
	RanMs  int64            `json:"ranMs"`
	OK     bool             `json:"ok"`
	Checks []ReconcileCheck `json:"checks"`
}

// errReconcileBusy answers a reconcile asked for while one runs on this node.
var errReconcileBusy = &apiError{status: http.StatusOK, code: CodeBusy,
	info: "a reconcile is already running on this node", retryAfter: 5 * time.Second}

// adminReconcile answers POST admin/reconcile {since}: verify's checks on this node's
// stores over the rows created since then. One runs at a time per node; a second is 0009
// with Retry-After.
func (s *Server) adminReconcile(r *http.Request) (any, error) {
	var req reconcileRequest
	body, err := readBody(r.Body, r.ContentLength)
	if err != nil {
		return nil, decodeJSON(r, &req) // words the read error
	}
	if len(bytes.TrimSpace(body)) > 0 { // no body: the default window
		if err := decodeBody(body, &req); err != nil {
			return nil, err
		}
	}
	now := s.now()
	since, err := parseSince(req.Since, now)
	if err != nil {
		return nil, err
	}
	if !s.reconciling.CompareAndSwap(false, true) {
		return nil, errReconcileBusy
	}
	defer s.reconciling.Store(false)
	start := time.Now()
	checks, err := s.opts.Console.Reconcile(r.Context(), since)
	if err != nil {
		return nil, err
	}
	out := reconcileResponse{Since: since.UnixMilli(), RanMs: time.Since(start).Milliseconds(), OK: true, Checks: nonNil(checks)}
	for _, c := range checks {
		out.OK = out.OK && c.OK
	}
	return out, nil
}

// parseSince reads a reconcile's since: absent is an hour before now; RFC 3339 or unix
// milliseconds, not in the future and at most maxReconcileWindow back.
func parseSince(v any, now time.Time) (time.Time, error) {
	var t time.Time
	switch x := v.(type) {
	case nil:
		return now.Add(-time.Hour), nil
	case float64:
		if x != float64(int64(x)) || x <= 0 {
			return t, badParam(http.StatusOK, "since must be RFC 3339 or unix milliseconds")
		}
		t = time.UnixMilli(int64(x))
	case string:
		if x == "" {
			return now.Add(-time.Hour), nil
		}
		if ms, err := strconv.ParseInt(x, 10, 64); err == nil && ms > 0 {
			t = time.UnixMilli(ms)
		} else if p, err := time.Parse(time.RFC3339, strings.TrimSpace(x)); err == nil {
			t = p
		} else {
			return t, badParam(http.StatusOK, "since must be RFC 3339 or unix milliseconds")
		}
	default:
		return t, badParam(http.StatusOK, "since must be RFC 3339 or unix milliseconds")
	}
	if t.After(now) {
		return t, badParam(http.StatusOK, "since is in the future")
	}
	if now.Sub(t) > maxReconcileWindow {
		return t, badParam(http.StatusOK, "since is more than 7 days ago")
	}
	return t, nil
}

// adminRainSessions answers GET admin/rain/sessions: every session ending after a day ago
// (ended, live and upcoming), each with its pacing report (admin/rain/sessions/{id}).
func (s *Server) adminRainSessions(r *http.Request) (any, error) {
	now := s.now()
	list, err := s.opts.Rains.SessionsEndingAfter(r.Context(), now.Add(-24*time.Hour))
	if err != nil {
		return nil, err
	}
	out := make([]rainAdminSession, 0, len(list))
	for _, ss := range list {
		rep, err := s.opts.Rains.Report(r.Context(), ss.ID)
		if err != nil {
			return nil, err
		}
		nodes := make(map[string]int64, len(rep.Nodes))
		for _, n := range rep.Nodes {
			nodes[n.NodeID] = n.SeqNo
		}
		ss = rep.Session // the report's read, with its pacing
		out = append(out, rainAdminSession{
			ID: ss.ID, Name: ss.Title, State: string(ss.State), Start: ss.Quota.Start.UnixMilli(), End: ss.Quota.End.UnixMilli(),
			Total: rep.Total, Issued: rep.Granted, Released: rep.Released, SeqNo: rep.SeqNo, Nodes: nodes,
		})
	}
	return out, nil
}

// rainAdminSession is one line of admin/rain/sessions; times are unix milliseconds.
type rainAdminSession struct {
	ID       int64            `json:"id"`
	Name     string           `json:"name"`
	State    string           `json:"state"`
	Start    int64            `json:"start"`
	End      int64            `json:"end"`
	Total    int              `json:"total"`
	Issued   int              `json:"issued"`
	Released int              `json:"released"`
	SeqNo    int64            `json:"seqNo"`
	Nodes    map[string]int64 `json:"nodes"`
}

// now is the server's clock.
func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// nonNil answers an empty JSON array rather than null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
