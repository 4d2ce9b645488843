package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
)

// RainGrants looks up what each win granted, in its winner's tables: the credit orders
// and the recharge orders (raffle_activity_order) whose out_business_no is the win's
// business number, and the award record the win wrote. It is keyed by business number;
// a win that granted nothing has no entry.
func (s *UserStore) RainGrants(ctx context.Context, wins []rain.Win) (map[string]reconcile.RainGrant, error) {
	type table struct{ db, t int }
	nos := map[table][]any{}
	awardIDs := map[table][]any{}
	bizOfAward := map[string]string{} // award record order id → business number
	for _, w := range wins {
		r := s.router.Route(w.UserID)
		tb := table{r.DB, r.Table}
		nos[tb] = append(nos[tb], w.BusinessNo())
		if w.Prize.Kind == rain.KindAward {
			id := winOrderID(winAwardTag, w)
			awardIDs[tb] = append(awardIDs[tb], id)
			bizOfAward[id] = w.BusinessNo()
		}
	}
	out := map[string]reconcile.RainGrant{}
	for tb, keys := range nos {
		sfx := TableSuffix(tb.t)
		db := s.dbs[tb.db].SQL
		// The only text spliced in is the router's table suffix and the placeholders.
		err := rainBatches(keys, func(part []any) error {
			return queryRows(ctx, db, "rain credit orders", `SELECT user_id, order_id, trade_name, trade_type, trade_amount, out_business_no
				FROM user_credit_order`+sfx+` WHERE out_business_no IN `+Placeholders(1, len(part)), func(rows *sql.Rows) error {
				o := reconcile.CreditOrder{DB: tb.db, Table: sfx}
				var tradeType, amount string
				if err := rows.Scan(&o.UserID, &o.OrderID, &o.Name, &tradeType, &amount, &o.BusinessNo); err != nil {
					return err
				}
				if err := o.Amount.Scan(amount); err != nil {
					return fmt.Errorf("amount of credit order %s: %w", o.OrderID, err)
				}
				o.Type = credit.TradeType(tradeType)
				g := out[o.BusinessNo]
				g.Credits = append(g.Credits, o)
				out[o.BusinessNo] = g
				return nil
			}, part...)
		})
		if err == nil {
			err = rainBatches(keys, func(part []any) error {
				return queryRows(ctx, db, "rain recharge orders", `SELECT user_id, order_id, sku, out_business_no
					FROM raffle_activity_order`+sfx+` WHERE out_business_no IN `+Placeholders(1, len(part)), func(rows *sql.Rows) error {
					var r reconcile.RainRecharge
					var no string
					if err := rows.Scan(&r.UserID, &r.OrderID, &r.SKU, &no); err != nil {
						return err
					}
					g := out[no]
					g.Recharges = append(g.Recharges, r)
					out[no] = g
					return nil
				}, part...)
			})
		}
		if err == nil {
			err = rainBatches(awardIDs[tb], func(part []any) error {
				return queryRows(ctx, db, "rain award records", `SELECT user_id, order_id, award_id
					FROM user_award_record`+sfx+` WHERE order_id IN `+Placeholders(1, len(part)), func(rows *sql.Rows) error {
					var a reconcile.RainAward
					if err := rows.Scan(&a.UserID, &a.OrderID, &a.AwardID); err != nil {
						return err
					}
					no := bizOfAward[a.OrderID]
					g := out[no]
					g.Awards = append(g.Awards, a)
					out[no] = g
					return nil
				}, part...)
			})
		}
		if err != nil {
			return nil, fmt.Errorf("user database %02d: %w", tb.db+1, err)
		}
	}
	return out, nil
}

// rainBatches calls fn with keys rainBatch at a time.
func rainBatches(keys []any, fn func(part []any) error) error {
	for start := 0; start < len(keys); start += rainBatch {
		if err := fn(keys[start:min(start+rainBatch, len(keys))]); err != nil {
			return err
		}
	}
	return nil
}
