package httpapi

import (
	"context"
	"net/http"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/money"
)

// activities is what the activity endpoints need of the activity domain.
type activities interface {
	Products(ctx context.Context, activityID int64) ([]activity.SKU, error)
	StageActivity(ctx context.Context, channel, source string) (int64, error)
	Account(ctx context.Context, userID string, activityID int64) (activity.View, error)
	Recharge(ctx context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error)
	Provision(ctx context.Context, req activity.ProvisionRequest) (activity.Provisioned, error)
	Stages(ctx context.Context) ([]activity.Stage, error)
	RecentOrders(ctx context.Context, userID string, limit int) ([]activity.RaffleOrder, error)
	Activity(ctx context.Context, activityID int64) (activity.Activity, error)
}

// awardRecords reads a user's award records (the user database).
type awardRecords interface {
	// RecentAwardRecords returns the user's newest records, newest first, at most limit,
	// in one activity or, with activityID 0, in all.
	RecentAwardRecords(ctx context.Context, userID string, activityID int64, limit int) ([]award.Record, error)
}

// recentAwardLimit is how many records activity/query_user_award_record answers.
const recentAwardLimit = 50

type awardRecordResponse struct {
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	AwardTime  int64  `json:"awardTime"` // unix ms
	State      string `json:"state"`
}

// queryUserAwardRecord answers the user's newest award records in the activity: what
// the records hold, which may trail an answered draw by the draw writer's lag.
func (s *Server) queryUserAwardRecord(r *http.Request) (any, error) {
	userID, activityID, err := decodeUserActivity(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Activities.Activity(r.Context(), activityID); err != nil {
		return nil, err
	}
	recs, err := s.opts.AwardRecords.RecentAwardRecords(r.Context(), userID, activityID, recentAwardLimit)
	if err != nil {
		return nil, err
	}
	out := make([]awardRecordResponse, 0, len(recs))
	for _, rec := range recs {
		out = append(out, awardRecordResponse{AwardID: rec.AwardID, AwardTitle: rec.AwardTitle,
			AwardTime: rec.AwardTime.UnixMilli(), State: string(rec.State)})
	}
	return out, nil
}

type skuProduct struct {
	SKU               int64         `json:"sku"`
	ActivityID        int64         `json:"activityId"`
	ActivityCountID   int64         `json:"activityCountId"`
	StockCount        int64         `json:"stockCount"`
	StockCountSurplus int64         `json:"stockCountSurplus"`
	ProductAmount     money.Cents   `json:"productAmount"`
	ActivityCount     activityCount `json:"activityCount"`
}

type activityCount struct {
	TotalCount int64 `json:"totalCount"`
	DayCount   int64 `json:"dayCount"`
	MonthCount int64 `json:"monthCount"`
}

// formID reads a positive integer from the query string or an urlencoded body, as
// big-market's front end sends POST ?activityId=… with an empty body.
func formID(r *http.Request, name string) (int64, error) {
	return positiveID(r.FormValue(name), name)
}

func (s *Server) querySKUProducts(r *http.Request) (any, error) {
	id, err := formID(r, "activityId")
	if err != nil {
		return nil, err
	}
	skus, err := s.opts.Activities.Products(r.Context(), id)
	if err != nil {
		return nil, err
	}
	out := make([]skuProduct, 0, len(skus))
	for _, k := range skus {
		out = append(out, skuProduct{
			SKU: k.SKU, ActivityID: k.ActivityID, ActivityCountID: k.CountID,
			StockCount: k.Stock, StockCountSurplus: k.StockSurplus, ProductAmount: k.Price,
			ActivityCount: activityCount{TotalCount: k.Count.Total, DayCount: k.Count.Day, MonthCount: k.Count.Month},
		})
	}
	return out, nil
}

func (s *Server) queryStageActivityID(r *http.Request) (any, error) {
	q := r.URL.Query()
	channel, source := q.Get("channel"), q.Get("source")
	if err := checkID("channel", channel, ident.MaxChannel); err != nil {
		return nil, err
	}
	if err := checkID("source", source, ident.MaxChannel); err != nil {
		return nil, err
	}
	return s.opts.Activities.StageActivity(r.Context(), channel, source)
}

type accountResponse struct {
	TotalCount        int64 `json:"totalCount"`
	TotalCountSurplus int64 `json:"totalCountSurplus"`
	DayCount          int64 `json:"dayCount"`
	DayCountSurplus   int64 `json:"dayCountSurplus"`
	MonthCount        int64 `json:"monthCount"`
	MonthCountSurplus int64 `json:"monthCountSurplus"`
}

func (s *Server) queryUserActivityAccount(r *http.Request) (any, error) {
	userID, activityID, err := decodeUserActivity(r)
	if err != nil {
		return nil, err
	}
	v, err := s.opts.Activities.Account(r.Context(), userID, activityID)
	if err != nil {
		return nil, err
	}
	return accountResponse{
		TotalCount: v.Total, TotalCountSurplus: v.TotalSurplus,
		DayCount: v.Day, DayCountSurplus: v.DaySurplus,
		MonthCount: v.Month, MonthCountSurplus: v.MonthSurplus,
	}, nil
}
