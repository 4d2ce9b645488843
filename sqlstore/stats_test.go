package sqlstore_test

import (
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestStatsReads checks the console's reads on the seed: the strategies and SKUs of the
// open activities, and a strategy's awards in sort order.
func TestStatsReads(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		if err := sqlstore.MigrateConfig(ctx, db); err != nil {
			t.Fatal(err)
		}
		if err := sqlstore.SeedDemo(ctx, db); err != nil {
			t.Fatal(err)
		}
		s := sqlstore.NewActivityStore(db, time.UTC)
		if ids, err := s.OpenStrategyIDs(ctx); err != nil || len(ids) != 2 || ids[0] != 10007 || ids[1] != 100006 {
			t.Errorf("strategies of open activities: %v %v, want [10007 100006]", ids, err)
		}
		skus, err := s.OpenSKUs(ctx)
		if err != nil || len(skus) != 7 || skus[0].SKU != 9011 || skus[0].ActivityID != 100301 || skus[0].Stock != 100000 ||
			skus[6].SKU != 9903 || skus[6].ActivityID != 100401 {
			t.Errorf("skus of open activities: %+v %v", skus, err)
		}
		if _, err := db.SQL.ExecContext(ctx, `UPDATE raffle_activity SET state = 'close' WHERE activity_id = 100401`); err != nil {
			t.Fatal(err)
		}
		if skus, err := s.OpenSKUs(ctx); err != nil || len(skus) != 4 || skus[3].SKU != 9014 {
			t.Errorf("skus of open activities once 100401 closed: %+v %v", skus, err)
		}
		if ids, err := s.OpenStrategyIDs(ctx); err != nil || len(ids) != 1 || ids[0] != 100006 {
			t.Errorf("strategies of open activities once 100401 closed: %v %v", ids, err)
		}
		awards, err := sqlstore.NewConfigStore(db).StrategyAwards(ctx, 100006)
		if err != nil || len(awards) != 8 || awards[0].AwardID != 101 || awards[0].Title != "随机积分" || awards[0].Count != 10000 ||
			awards[7].AwardID != 108 || awards[7].Sort != 8 {
			t.Errorf("awards of 100006: %+v %v", awards, err)
		}
		if awards, err := sqlstore.NewConfigStore(db).StrategyAwards(ctx, 42); err != nil || len(awards) != 0 {
			t.Errorf("awards of an unknown strategy: %+v %v", awards, err)
		}
	})
}
