package sqlstore_test

import (
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestSettingStore: the settings table is migrated on both dialects, an activity without a
// row has none, and a save creates then replaces the row.
func TestSettingStore(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		if err := sqlstore.MigrateConfig(ctx, db); err != nil {
			t.Fatal(err)
		}
		s := sqlstore.NewSettingStore(db)
		if _, found, err := s.ActivitySettings(ctx, 100301); found || err != nil {
			t.Fatalf("settings without a row: found %v, %v", found, err)
		}
		want := gate.Settings{ActivityID: 100301, OneWin: true, SignedPath: true, PathWindow: 90 * time.Second}
		if err := s.SaveActivitySettings(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, found, err := s.ActivitySettings(ctx, 100301); !found || err != nil || got != want {
			t.Fatalf("settings %+v %v %v, want %+v", got, found, err, want)
		}
		want = gate.Settings{ActivityID: 100301}
		if err := s.SaveActivitySettings(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, _, err := s.ActivitySettings(ctx, 100301); err != nil || got != want {
			t.Fatalf("settings after a replace %+v %v, want %+v", got, err, want)
		}
		var rows int
		if err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM raffle_activity_setting`).Scan(&rows); err != nil || rows != 1 {
			t.Errorf("%d rows (%v), want 1", rows, err)
		}
	})
}
