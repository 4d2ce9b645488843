package httpapi

import (
	"context"
	"net/http"

	"github.com/bigmarket/bigmarket/raffle"
)

// raffles is what the draw, armory and award view endpoints need of the orchestrator.
type raffles interface {
	Armory(ctx context.Context, activityID int64) error
	Draw(ctx context.Context, userID string, activityID int64) (raffle.Result, error)
	AwardList(ctx context.Context, userID string, activityID int64) ([]raffle.AwardView, error)
	RuleWeights(ctx context.Context, userID string, activityID int64) ([]raffle.WeightView, error)
	ActivateStage(ctx context.Context, stageID int64) error
}

// userActivityRequest is the body of the plain endpoints that name a user and an activity.
type userActivityRequest struct {
	UserID     string `json:"userId"`
	ActivityID ID     `json:"activityId"`
}

// decodeUserActivity reads and checks a userActivityRequest, so that bad input never
// reaches a service. Under a _by_token route the user is the token's and the body is read
// without its userId, so that a userId there, of whatever type, changes nothing.
func decodeUserActivity(r *http.Request) (userID string, activityID int64, err error) {
	var req userActivityRequest
	if userID, ok := tokenUser(r.Context()); ok {
		var body struct {
			ActivityID ID `json:"activityId"`
		}
		if err := decodeJSON(r, &body); err != nil {
			return "", 0, err
		}
		req = userActivityRequest{UserID: userID, ActivityID: body.ActivityID}
	} else if err := decodeJSON(r, &req); err != nil {
		return "", 0, err
	}
	if err := checkUserID(req.UserID); err != nil {
		return "", 0, err
	}
	if req.ActivityID <= 0 {
		return "", 0, badParam(http.StatusOK, "activityId must be a positive integer")
	}
	return req.UserID, int64(req.ActivityID), nil
}

func (s *Server) activityArmory(r *http.Request) (any, error) {
	id, err := queryID(r, "activityId")
	if err != nil {
		return nil, err
	}
	if err := s.opts.Raffles.Armory(r.Context(), id); err != nil {
		return nil, err
	}
	return true, nil
}

type drawResponse struct {
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	AwardIndex int    `json:"awardIndex"`
}

func (s *Server) draw(r *http.Request) (any, error) { return s.drawWith(r, "") }

// drawWith draws for the request's user; with a gate, the draw path's signature (empty
// for the plain draw) is checked before anything is read.
func (s *Server) drawWith(r *http.Request, signature string) (any, error) {
	userID, activityID, err := decodeUserActivity(r)
	if err != nil {
		return nil, err
	}
	if s.opts.Gate != nil {
		if err := s.opts.Gate.CheckPath(r.Context(), userID, activityID, signature); err != nil {
			return nil, err
		}
	}
	res, err := s.opts.Raffles.Draw(r.Context(), userID, activityID)
	if err != nil {
		return nil, err
	}
	return drawResponse{AwardID: res.AwardID, AwardTitle: res.AwardTitle, AwardIndex: res.AwardIndex}, nil
}

type awardResponse struct {
	AwardID            int    `json:"awardId"`
	AwardTitle         string `json:"awardTitle"`
	AwardSubtitle      string `json:"awardSubtitle"`
	Sort               int    `json:"sort"`
	AwardRuleLockCount int64  `json:"awardRuleLockCount"`
	IsAwardUnlock      bool   `json:"isAwardUnlock"`
	WaitUnLockCount    int64  `json:"waitUnLockCount"`
}

func (s *Server) queryAwardList(r *http.Request) (any, error) {
	userID, activityID, err := decodeUserActivity(r)
	if err != nil {
		return nil, err
	}
	views, err := s.opts.Raffles.AwardList(r.Context(), userID, activityID)
	if err != nil {
		return nil, err
	}
	out := make([]awardResponse, 0, len(views))
	for _, v := range views {
		out = append(out, awardResponse{
			AwardID: v.AwardID, AwardTitle: v.Title, AwardSubtitle: v.Subtitle, Sort: v.Sort,
			AwardRuleLockCount: v.RuleLockCount, IsAwardUnlock: v.Unlocked, WaitUnLockCount: v.WaitUnlockCount,
		})
	}
	return out, nil
}

type ruleWeightResponse struct {
	RuleWeightCount                  int64           `json:"ruleWeightCount"`
	UserActivityAccountTotalUseCount int64           `json:"userActivityAccountTotalUseCount"`
	StrategyAwards                   []strategyAward `json:"strategyAwards"`
}

type strategyAward struct {
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
}

func (s *Server) queryRuleWeights(r *http.Request) (any, error) {
	userID, activityID, err := decodeUserActivity(r)
	if err != nil {
		return nil, err
	}
	views, err := s.opts.Raffles.RuleWeights(r.Context(), userID, activityID)
	if err != nil {
		return nil, err
	}
	out := make([]ruleWeightResponse, 0, len(views))
	for _, v := range views {
		awards := make([]strategyAward, 0, len(v.Awards))
		for _, a := range v.Awards {
			awards = append(awards, strategyAward{AwardID: a.AwardID, AwardTitle: a.Title})
		}
		out = append(out, ruleWeightResponse{RuleWeightCount: v.Threshold, UserActivityAccountTotalUseCount: v.UsedTotal, StrategyAwards: awards})
	}
	return out, nil
}
