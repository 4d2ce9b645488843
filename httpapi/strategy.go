package httpapi

import (
	"net/http"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
)

// systemUser is the user random_raffle draws as.
const systemUser = "system"

func (s *Server) strategyArmory(r *http.Request) (any, error) {
	id, err := queryID(r, "strategyId")
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Strategies.Armory(r.Context(), id); err != nil {
		return nil, err
	}
	return true, nil
}

type randomRaffleRequest struct {
	StrategyID ID `json:"strategyId"`
}

type randomRaffleResponse struct {
	AwardID    int `json:"awardId"`
	AwardIndex int `json:"awardIndex"`
}

// randomRaffle is big-market's test draw of a strategy as the system user. It deducts
// stock as a user's draw does, so the whole draw is past its commit point: a slow one is
// waited for rather than answered 0006 while it takes stock.
func (s *Server) randomRaffle(r *http.Request) (any, error) {
	var req randomRaffleRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.StrategyID <= 0 {
		return nil, badParam(http.StatusOK, "strategyId is required")
	}
	ctx, err := guard.Commit(r.Context())
	if err != nil {
		return nil, err
	}
	// It writes no award record, so its grant is made durable in the stock log before it
	// answers: no Redis loss can give the unit again.
	res, err := s.opts.Strategies.Draw(ctx, strategy.Input{UserID: systemUser, StrategyID: int64(req.StrategyID), Durable: true})
	if err != nil {
		return nil, err
	}
	return randomRaffleResponse{AwardID: res.AwardID, AwardIndex: res.Sort}, nil
}
