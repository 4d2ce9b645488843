package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

func TestActivityStore(t *testing.T) {
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
		a, err := s.Activity(ctx, 100301)
		if err != nil {
			t.Fatal(err)
		}
		want := activity.Activity{ID: 100301, Name: a.Name, Desc: a.Desc, StrategyID: 100006, State: activity.StateOpen,
			Begin: time.Date(2024, 3, 9, 10, 15, 10, 0, time.UTC), End: time.Date(2034, 3, 9, 10, 15, 10, 0, time.UTC)}
		if a != want || a.Name == "" {
			t.Errorf("activity 100301 = %+v, want %+v", a, want)
		}
		if _, err := s.Activity(ctx, 42); !errors.Is(err, activity.ErrActivityNotFound) {
			t.Errorf("unknown activity: %v", err)
		}
		skus, err := s.SKUs(ctx, 100301)
		if err != nil {
			t.Fatal(err)
		}
		if len(skus) != 4 {
			t.Fatalf("activity 100301 has %d skus, want 4", len(skus))
		}
		first := activity.SKU{SKU: 9011, ActivityID: 100301, CountID: 11101, Stock: 100000, StockSurplus: 100000,
			Price: 20000, Count: activity.Count{ID: 11101, Total: 150, Day: 150, Month: 150}}
		if skus[0] != first || skus[3].SKU != 9014 || skus[3].Price != 500 || skus[3].Count.Total != 1 {
			t.Errorf("skus = %+v", skus)
		}
		if none, err := s.SKUs(ctx, 42); err != nil || len(none) != 0 {
			t.Errorf("skus of an unknown activity: %v %v", none, err)
		}
		if k, err := s.SKU(ctx, 9014); err != nil || k.ActivityID != 100301 || k.Count.Day != 1 || k.Price != 500 {
			t.Errorf("sku 9014 = %+v %v", k, err)
		}
		if _, err := s.SKU(ctx, 1); !errors.Is(err, activity.ErrSKUNotFound) {
			t.Errorf("unknown sku: %v", err)
		}
		shanghai, _ := time.LoadLocation("Asia/Shanghai")
		if a, _ := sqlstore.NewActivityStore(db, shanghai).Activity(ctx, 100301); !a.Begin.Equal(time.Date(2024, 3, 9, 2, 15, 10, 0, time.UTC)) {
			t.Errorf("begin read in Asia/Shanghai = %v, want 10:15:10 +08:00", a.Begin)
		}
		if ids, err := s.SKUIDs(ctx); err != nil || len(ids) != 7 || ids[0] != 9011 {
			t.Errorf("sku ids %v %v", ids, err)
		}
		for _, remaining := range []int64{90, 95, -3} {
			if err := s.SyncSKUSurplus(ctx, 9012, remaining); err != nil {
				t.Fatal(err)
			}
		}
		if k, _ := s.SKU(ctx, 9012); k.StockSurplus != 0 {
			t.Errorf("sku surplus after syncing 90, 95, -3 = %d, want 0 (monotone min, floored)", k.StockSurplus)
		}
		// A top-up adds to count and surplus; a sync of a sale before it leaves the new
		// units alone, later sales lower them.
		k, _ := s.SKU(ctx, 9012)
		if total, err := s.AddSKUStock(ctx, 9012, 7); err != nil || total != k.Stock+7 {
			t.Fatalf("AddSKUStock: %d %v", total, err)
		}
		for _, step := range []struct{ issued, want int64 }{{k.Stock, 7}, {k.Stock - 5, 7}, {k.Stock + 3, 4}, {k.Stock + 100, 0}} {
			if err := s.SyncSKUIssued(ctx, 9012, step.issued); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.SKU(ctx, 9012); got.StockSurplus != step.want {
				t.Fatalf("sync of issued %d: surplus %d, want %d", step.issued, got.StockSurplus, step.want)
			}
		}
		if _, err := s.AddSKUStock(ctx, 424242, 1); !errors.Is(err, activity.ErrSKUNotFound) {
			t.Errorf("top-up of an unknown sku: %v", err)
		}
		if _, err := s.AddSKUStock(ctx, 9012, 1<<31-1); !errors.Is(err, activity.ErrInvalidUnits) {
			t.Errorf("top-up past the column's range: %v", err)
		}
		stages, err := s.Stages(ctx)
		if err != nil || len(stages) != 1 || stages[0].Channel != "c01" || stages[0].ActivityID != 100401 || stages[0].State != "active" {
			t.Fatalf("stages %+v %v", stages, err)
		}
		if _, err := db.SQL.ExecContext(ctx, `UPDATE raffle_activity_stage SET state = 'create' WHERE id = ?`, stages[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StageActivity(ctx, "c01", "s01"); !errors.Is(err, activity.ErrNoStageActivity) {
			t.Errorf("inactive stage answered: %v", err)
		}
		if err := s.ActivateStage(ctx, stages[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := s.ActivateStage(ctx, stages[0].ID); err != nil {
			t.Errorf("activating an active stage again: %v", err)
		}
		if err := s.ActivateStage(ctx, 424242); !errors.Is(err, activity.ErrStageNotFound) {
			t.Errorf("activate unknown stage: %v", err)
		}
		if id, err := s.StageActivity(ctx, "c01", "s01"); err != nil || id != 100401 {
			t.Errorf("stage c01/s01 = %d %v, want 100401", id, err)
		}
		if _, err := s.StageActivity(ctx, "c01", "nope"); !errors.Is(err, activity.ErrNoStageActivity) {
			t.Errorf("unknown stage: %v", err)
		}
	})
}
