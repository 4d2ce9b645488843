package httpapi

import (
	"net/http"
	"strconv"
	"time"
)

// The erp/* endpoints are big-market's operator views, behind the admin token here.

// maxERPOrders bounds query_user_raffle_order.
const maxERPOrders = 500

type stageView struct {
	ID         int64  `json:"id"`
	Channel    string `json:"channel"`
	Source     string `json:"source"`
	ActivityID int64  `json:"activityId"`
	State      string `json:"state"`
}

type raffleOrderView struct {
	UserID       string `json:"userId"`
	ActivityID   int64  `json:"activityId"`
	ActivityName string `json:"activityName"`
	StrategyID   int64  `json:"strategyId"`
	OrderID      string `json:"orderId"`
	OrderTime    int64  `json:"orderTime"` // Unix milliseconds, as Jackson renders a Date
	OrderState   string `json:"orderState"`
	CreateTime   int64  `json:"createTime"`
	UpdateTime   int64  `json:"updateTime"`
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// queryStageList answers GET erp/query_raffle_activity_stage_list.
func (s *Server) queryStageList(r *http.Request) (any, error) {
	stages, err := s.opts.Activities.Stages(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]stageView, 0, len(stages))
	for _, st := range stages {
		out = append(out, stageView{ID: st.ID, Channel: st.Channel, Source: st.Source, ActivityID: st.ActivityID, State: st.State})
	}
	return out, nil
}

// activateStage answers POST erp/update_stage_activity_2_active {id}.
func (s *Server) activateStage(r *http.Request) (any, error) {
	var req struct {
		ID ID `json:"id"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ID <= 0 {
		return nil, badParam(http.StatusOK, "id must be a positive integer")
	}
	if err := s.opts.Raffles.ActivateStage(r.Context(), int64(req.ID)); err != nil {
		return nil, err
	}
	return true, nil
}

// queryUserRaffleOrders answers GET erp/query_user_raffle_order[?userId=&limit=]: the
// newest raffle orders, of one user or of everyone.
func (s *Server) queryUserRaffleOrders(r *http.Request) (any, error) {
	q := r.URL.Query()
	userID := q.Get("userId")
	if userID != "" {
		if err := checkUserID(userID); err != nil {
			return nil, err
		}
	}
	limit := 100
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n <= 0 || n > maxERPOrders {
			return nil, badParam(http.StatusOK, "limit must be between 1 and %d", maxERPOrders)
		}
		limit = n
	}
	orders, err := s.opts.Activities.RecentOrders(r.Context(), userID, limit)
	if err != nil {
		return nil, err
	}
	out := make([]raffleOrderView, 0, len(orders))
	for _, o := range orders {
		out = append(out, raffleOrderView{
			UserID: o.UserID, ActivityID: o.ActivityID, ActivityName: o.ActivityName, StrategyID: o.StrategyID,
			OrderID: o.OrderID, OrderTime: millis(o.OrderTime), OrderState: string(o.State),
			CreateTime: millis(o.Created), UpdateTime: millis(o.Updated),
		})
	}
	return out, nil
}
