package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
)

// rains is what the rain endpoints need of the rain service.
type rains interface {
	Create(ctx context.Context, req rain.CreateRequest) (rain.Session, error)
	UpdateQuota(ctx context.Context, sessionID int64, req rain.QuotaRequest) (rain.Quota, error)
	Grab(ctx context.Context, userID string, sessionID int64) (rain.GrabResult, error)
	GrabRetry(ctx context.Context, userID string, sessionID int64) (rain.GrabResult, error)
	Sessions(ctx context.Context) ([]rain.Session, time.Time, error)
	Wins(ctx context.Context, userID string, sessionID int64) ([]rain.Win, error)
	Report(ctx context.Context, sessionID int64) (rain.Report, error)
	SessionsEndingAfter(ctx context.Context, t time.Time) ([]rain.Session, error)
}

// rainPrizeBody is one prize line of a create or quota request; amounts are in yuan.
type rainPrizeBody struct {
	Kind    string `json:"kind"`
	Amount  yuan   `json:"amount"`
	Min     yuan   `json:"min"`
	Max     yuan   `json:"max"`
	SKU     ID     `json:"sku"`
	AwardID ID     `json:"awardId"`
	Count   int    `json:"count"`
}

// specs turns prize lines into the service's specs; a bad amount or a field that does not
// belong to the line's kind is a 0002 naming the line.
func rainSpecs(lines []rainPrizeBody) ([]rain.PrizeSpec, error) {
	specs := make([]rain.PrizeSpec, 0, len(lines))
	for i, l := range lines {
		field := fmt.Sprintf("prizes[%d]", i)
		amount := func(name string, y yuan) (money.Cents, error) {
			if y == "" {
				return 0, nil
			}
			c, err := money.Parse(string(y))
			if err != nil || c <= 0 {
				return 0, badParam(http.StatusOK, "%s.%s must be a positive amount in yuan with at most two decimals", field, name)
			}
			return c, nil
		}
		p := rain.PrizeSpec{Kind: rain.Kind(l.Kind), Count: l.Count}
		var err error
		if p.Amount, err = amount("amount", l.Amount); err != nil {
			return nil, err
		}
		if p.Min, err = amount("min", l.Min); err != nil {
			return nil, err
		}
		if p.Max, err = amount("max", l.Max); err != nil {
			return nil, err
		}
		switch p.Kind {
		case rain.KindCash:
			if l.SKU != 0 || l.AwardID != 0 {
				return nil, badParam(http.StatusOK, "%s: a cash prize names no sku or awardId", field)
			}
			ranged := p.Min != 0 || p.Max != 0
			if ranged == (p.Amount != 0) {
				return nil, badParam(http.StatusOK, "%s: a cash prize has either amount or min and max", field)
			}
			if ranged && (p.Min == 0 || p.Max == 0 || p.Min > p.Max) {
				return nil, badParam(http.StatusOK, "%s: min and max must both be set, min at most max", field)
			}
		case rain.KindSKU:
			if p.Amount != 0 || p.Min != 0 || p.Max != 0 || l.AwardID != 0 || l.SKU <= 0 {
				return nil, badParam(http.StatusOK, "%s: a sku prize names a positive sku and nothing else", field)
			}
			p.SKU = int64(l.SKU)
		case rain.KindAward:
			if p.Amount != 0 || p.Min != 0 || p.Max != 0 || l.SKU != 0 || l.AwardID <= 0 || int64(l.AwardID) > 1<<31-1 {
				return nil, badParam(http.StatusOK, "%s: an award prize names a positive awardId and nothing else", field)
			}
			p.AwardID = int(l.AwardID)
		default:
			return nil, badParam(http.StatusOK, "%s.kind must be cash, sku or award", field)
		}
		if p.Count < 1 || p.Count > rain.MaxPrizes {
			return nil, badParam(http.StatusOK, "%s.count must be 1 to %d", field, rain.MaxPrizes)
		}
		specs = append(specs, p)
	}
	return specs, nil
}

// unixMs turns a request's unix ms into a time; 0 is absent.
func unixMs(field string, ms int64) (time.Time, error) {
	// Years 2000 to 2200: anything else is a unit mistake (seconds, microseconds).
	if ms < 946_684_800_000 || ms > 7_258_118_400_000 {
		return time.Time{}, badParam(http.StatusOK, "%s must be a time in unix milliseconds", field)
	}
	return time.UnixMilli(ms), nil
}

type createRainBody struct {
	Title     string          `json:"title"`
	StartTime int64           `json:"startTime"`
	EndTime   int64           `json:"endTime"`
	UserCap   int             `json:"userCap"`
	Burst     *int            `json:"burst"`
	Weights   []int           `json:"weights"`
	Budget    yuan            `json:"budget"`
	Prizes    []rainPrizeBody `json:"prizes"`
}

type sessionIDResponse struct {
	SessionID int64 `json:"sessionId"`
}

// createRainSession arms a rain session: its prizes are split, written and loaded, and its
// first quota version (SeqNo 1) reaches every node.
func (s *Server) createRainSession(r *http.Request) (any, error) {
	var body createRainBody
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	start, err := unixMs("startTime", body.StartTime)
	if err != nil {
		return nil, err
	}
	end, err := unixMs("endTime", body.EndTime)
	if err != nil {
		return nil, err
	}
	if len(body.Prizes) == 0 {
		return nil, badParam(http.StatusOK, "prizes must name at least one prize")
	}
	specs, err := rainSpecs(body.Prizes)
	if err != nil {
		return nil, err
	}
	var budget money.Cents
	if body.Budget != "" {
		if budget, err = money.Parse(string(body.Budget)); err != nil || budget <= 0 {
			return nil, badParam(http.StatusOK, "budget must be a positive amount in yuan with at most two decimals")
		}
	}
	sess, err := s.opts.Rains.Create(r.Context(), rain.CreateRequest{
		Title: body.Title, Start: start, End: end, UserCap: body.UserCap, Burst: body.Burst,
		Weights: body.Weights, Budget: budget, Prizes: specs,
	})
	if err != nil {
		return nil, err
	}
	return sessionIDResponse{SessionID: sess.ID}, nil
}

type quotaBody struct {
	UserCap *int            `json:"userCap"`
	Burst   *int            `json:"burst"`
	Total   *int            `json:"total"`
	Weights *[]int          `json:"weights"`
	EndTime *int64          `json:"endTime"`
	Prizes  []rainPrizeBody `json:"prizes"`
}

type quotaResponse struct {
	SessionID int64 `json:"sessionId"`
	SeqNo     int64 `json:"seqNo"`
	Total     int   `json:"total"`
	Burst     int   `json:"burst"`
	Weights   []int `json:"weights"`
	UserCap   int   `json:"userCap"`
	StartTime int64 `json:"startTime"`
	EndTime   int64 `json:"endTime"`
}

func viewQuota(q rain.Quota) quotaResponse {
	w := q.Weights
	if w == nil {
		w = []int{}
	}
	return quotaResponse{SessionID: q.SessionID, SeqNo: q.SeqNo, Total: q.Total, Burst: q.Burst, Weights: w,
		UserCap: q.UserCap, StartTime: q.Start.UnixMilli(), EndTime: q.End.UnixMilli()}
}

// rainSessionID reads the {id} of an admin session path.
func rainSessionID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badParam(http.StatusOK, "session id must be a positive integer")
	}
	return id, nil
}

// updateRainQuota writes a new quota version of a session (a higher SeqNo), which every
// node swaps in once it has built it; fields left out keep their values.
func (s *Server) updateRainQuota(r *http.Request) (any, error) {
	id, err := rainSessionID(r)
	if err != nil {
		return nil, err
	}
	var body quotaBody
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	req := rain.QuotaRequest{UserCap: body.UserCap, Burst: body.Burst, Total: body.Total, Weights: body.Weights}
	if body.EndTime != nil {
		end, err := unixMs("endTime", *body.EndTime)
		if err != nil {
			return nil, err
		}
		req.End = &end
	}
	if req.Prizes, err = rainSpecs(body.Prizes); err != nil {
		return nil, err
	}
	q, err := s.opts.Rains.UpdateQuota(r.Context(), id, req)
	if err != nil {
		return nil, err
	}
	return viewQuota(q), nil
}

type rainSessionView struct {
	SessionID int64  `json:"sessionId"`
	Title     string `json:"title"`
	StartTime int64  `json:"startTime"`
	EndTime   int64  `json:"endTime"`
	Total     int    `json:"total"`
	UserCap   int    `json:"userCap"`
	SeqNo     int64  `json:"seqNo"`
	State     string `json:"state"` // upcoming, live
}

type rainSessionsResponse struct {
	ServerTime int64             `json:"serverTime"`
	Sessions   []rainSessionView `json:"sessions"`
}

// rainSessions lists the upcoming and live sessions with the server's time, from which a
// page counts down without trusting the device's clock.
func (s *Server) rainSessions(r *http.Request) (any, error) {
	list, now, err := s.opts.Rains.Sessions(r.Context())
	if err != nil {
		return nil, err
	}
	out := rainSessionsResponse{ServerTime: now.UnixMilli(), Sessions: make([]rainSessionView, 0, len(list))}
	for _, ss := range list {
		state := "live"
		if now.Before(ss.Quota.Start) {
			state = "upcoming"
		}
		out.Sessions = append(out.Sessions, rainSessionView{
			SessionID: ss.ID, Title: ss.Title, StartTime: ss.Quota.Start.UnixMilli(), EndTime: ss.Quota.End.UnixMilli(),
			Total: ss.Quota.Total, UserCap: ss.Quota.UserCap, SeqNo: ss.Quota.SeqNo, State: state,
		})
	}
	return out, nil
}

type rainPrizeView struct {
	Kind    string       `json:"kind,omitempty"`
	Amount  *money.Cents `json:"amount,omitempty"`
	SKU     int64        `json:"sku,omitempty"`
	AwardID int          `json:"awardId,omitempty"`
}

func viewPrize(p rain.Prize) rainPrizeView {
	v := rainPrizeView{Kind: string(p.Kind), SKU: p.SKU, AwardID: p.AwardID}
	if p.Kind == rain.KindCash {
		a := p.Amount
		v.Amount = &a
	}
	return v
}

type rainGrabResponse struct {
	Won bool `json:"won"`
	// N numbers the user's wins in the session from 1: a tap that returns a win already
	// answered (its first answer's event was still in flight) carries the same N, so a
	// page counts it once.
	N int `json:"n,omitempty"`
	rainPrizeView
}

// rainMiss is the answer to most taps, encoded once.
var rainMiss = encodeSuccess(rainGrabResponse{})

// rainGrab is one tap: a win answers its prize once the win is durable; a tap while the
// plan allows nothing more is a miss, won false.
func (s *Server) rainGrab(r *http.Request) (any, error) {
	var body struct {
		UserID    string `json:"userId"`
		SessionID ID     `json:"sessionId"`
		// Retry marks a tap that repeats one answered 0009: it asks Redis for the user's
		// win not yet durable, whichever node answered the first.
		Retry bool `json:"retry"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	if u, ok := tokenUser(r.Context()); ok {
		body.UserID = u
	}
	if err := checkUserID(body.UserID); err != nil {
		return nil, err
	}
	if body.SessionID <= 0 {
		return nil, badParam(http.StatusOK, "sessionId must be a positive integer")
	}
	grab := s.opts.Rains.Grab
	if body.Retry {
		grab = s.opts.Rains.GrabRetry
	}
	res, err := grab(r.Context(), body.UserID, int64(body.SessionID))
	if err != nil {
		return nil, err
	}
	if !res.Won {
		return rainMiss, nil
	}
	return rainGrabResponse{Won: true, N: res.Win.N, rainPrizeView: viewPrize(res.Win.Prize)}, nil
}

type rainWinView struct {
	SessionID int64 `json:"sessionId"`
	N         int   `json:"n"`
	WinTime   int64 `json:"winTime"`
	rainPrizeView
}

// rainWins lists the user's wins, in one session or (sessionId absent) in all, after the
// green channel has applied the ones still on their way.
func (s *Server) rainWins(r *http.Request) (any, error) {
	userID, err := formUserID(r)
	if err != nil {
		return nil, err
	}
	var session int64
	if v := r.FormValue("sessionId"); v != "" {
		if session, err = strconv.ParseInt(v, 10, 64); err != nil || session <= 0 {
			return nil, badParam(http.StatusOK, "sessionId must be a positive integer")
		}
	}
	wins, err := s.opts.Rains.Wins(r.Context(), userID, session)
	if err != nil {
		return nil, err
	}
	out := make([]rainWinView, 0, len(wins))
	for _, w := range wins {
		out = append(out, rainWinView{SessionID: w.SessionID, N: w.N, WinTime: w.Time.UnixMilli(), rainPrizeView: viewPrize(w.Prize)})
	}
	return out, nil
}

type rainSliceView struct {
	Start   int64 `json:"start"`
	Allowed int   `json:"allowed"`
	Granted int   `json:"granted"`
}

type rainReportResponse struct {
	SessionID    int64           `json:"sessionId"`
	Title        string          `json:"title"`
	State        string          `json:"state"`
	StartTime    int64           `json:"startTime"`
	EndTime      int64           `json:"endTime"`
	ServerTime   int64           `json:"serverTime"`
	Armed        int             `json:"armed"`
	Total        int             `json:"total"`
	Released     int             `json:"released"`
	Granted      int             `json:"granted"`
	SeqNo        int64           `json:"seqNo"`
	Quota        *quotaResponse  `json:"quota,omitempty"`
	Budget       *money.Cents    `json:"budget,omitempty"`
	Nodes        []rain.NodeSeq  `json:"nodes"`
	SliceSeconds int             `json:"sliceSeconds"`
	Slices       []rainSliceView `json:"slices"`
	Ledger       *rain.Ledger    `json:"ledger,omitempty"`
}

// rainReport shows a session as it runs: what the plan has released, what was granted,
// the SeqNo in force on every node, and per second the allowance against the wins; the
// operator's view adds the quota, the budget and, once ended, the ledger.
func (s *Server) rainReport(r *http.Request) (any, error) { return s.reportRain(r, true) }

// rainSession is the public view of rainReport: a page's countdown and progress.
func (s *Server) rainSession(r *http.Request) (any, error) { return s.reportRain(r, false) }

func (s *Server) reportRain(r *http.Request, operator bool) (any, error) {
	id, err := rainSessionID(r)
	if err != nil {
		return nil, err
	}
	rep, err := s.opts.Rains.Report(r.Context(), id)
	if err != nil {
		return nil, err
	}
	ss := rep.Session
	out := rainReportResponse{
		SessionID: ss.ID, Title: ss.Title, State: string(ss.State), StartTime: ss.Quota.Start.UnixMilli(),
		EndTime: ss.Quota.End.UnixMilli(), ServerTime: rep.ServerTime.UnixMilli(), Armed: ss.Armed,
		Total: rep.Total, Released: rep.Released, Granted: rep.Granted, SeqNo: rep.SeqNo,
		Nodes: rep.Nodes, SliceSeconds: rep.SliceSeconds, Slices: make([]rainSliceView, 0, len(rep.Slices)),
		Ledger: ss.Ledger,
	}
	q := viewQuota(ss.Quota)
	out.Quota = &q
	if out.Nodes == nil {
		out.Nodes = []rain.NodeSeq{}
	}
	if ss.Budget > 0 {
		b := ss.Budget
		out.Budget = &b
	}
	if !operator {
		out.Quota, out.Budget, out.Ledger = nil, nil, nil
	}
	for _, sl := range rep.Slices {
		out.Slices = append(out.Slices, rainSliceView{Start: sl.Start.UnixMilli(), Allowed: sl.Allowed, Granted: sl.Granted})
	}
	return out, nil
}
