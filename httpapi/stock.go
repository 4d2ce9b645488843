package httpapi

import (
	"context"
	"net/http"

	"github.com/bigmarket/bigmarket/strategy"
)

// stockAdder tops up award and SKU stock: the strategy and activity services.
type stockAdder interface {
	AddStock(ctx context.Context, ref strategy.AwardRef, units int64) (int64, error)
	AddSKUStock(ctx context.Context, sku, units int64) (int64, error)
}

// addStockRequest names an award (strategyId and awardId) or a SKU, and the units to add.
type addStockRequest struct {
	StrategyID ID `json:"strategyId"`
	AwardID    ID `json:"awardId"`
	SKU        ID `json:"sku"`
	Units      ID `json:"units"`
}

// addStockResponse is the stock's count after the top-up: awardCount for an award,
// stockCount for a SKU.
type addStockResponse struct {
	AwardCount *int64 `json:"awardCount,omitempty"`
	StockCount *int64 `json:"stockCount,omitempty"`
}

// maxAwardID bounds an award id, an int in the domain.
const maxAwardID = 1<<31 - 1

// addStock adds units to an award's or a SKU's stock, durably, and makes them grantable
// on every node (POST /api/v1/admin/stock/add). Bad input and unknown ids are 0002 and
// change nothing; once the units are durable the answer is 0000 with the new count, even
// if making them grantable is left to the stock reconcile job. A repeat adds them again.
func (s *Server) addStock(r *http.Request) (any, error) {
	var req addStockRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Units <= 0 || req.Units > strategy.MaxTopUp {
		return nil, badParam(http.StatusOK, "units must be an integer from 1 to %d", strategy.MaxTopUp)
	}
	award := req.StrategyID != 0 || req.AwardID != 0
	switch {
	case award && req.SKU != 0:
		return nil, badParam(http.StatusOK, "name either strategyId and awardId, or sku")
	case award:
		if req.StrategyID <= 0 {
			return nil, badParam(http.StatusOK, "strategyId must be a positive integer")
		}
		if req.AwardID <= 0 || req.AwardID > maxAwardID {
			return nil, badParam(http.StatusOK, "awardId must be a positive integer")
		}
		ref := strategy.AwardRef{StrategyID: int64(req.StrategyID), AwardID: int(req.AwardID)}
		total, err := s.opts.Stock.AddStock(r.Context(), ref, int64(req.Units))
		if err != nil {
			return nil, err
		}
		return addStockResponse{AwardCount: &total}, nil
	case req.SKU > 0:
		total, err := s.opts.Stock.AddSKUStock(r.Context(), int64(req.SKU), int64(req.Units))
		if err != nil {
			return nil, err
		}
		return addStockResponse{StockCount: &total}, nil
	default:
		return nil, badParam(http.StatusOK, "strategyId and awardId, or sku, are required")
	}
}
