package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/gate"
)

// SettingStore keeps the per-activity draw settings (raffle_activity_setting) in the
// config database; it implements gate.Store.
type SettingStore struct{ db *DB }

var _ gate.Store = (*SettingStore)(nil)

// NewSettingStore returns a SettingStore on a migrated config database.
func NewSettingStore(db *DB) *SettingStore { return &SettingStore{db: db} }

// ActivitySettings implements gate.Store.
func (s *SettingStore) ActivitySettings(ctx context.Context, activityID int64) (gate.Settings, bool, error) {
	var oneWin, signed bool
	var window int64
	err := s.db.SQL.QueryRowContext(ctx, `SELECT one_win, signed_path, path_window_seconds
		FROM raffle_activity_setting WHERE activity_id = ?`, activityID).Scan(&oneWin, &signed, &window)
	if errors.Is(err, sql.ErrNoRows) {
		return gate.Settings{}, false, nil
	}
	if err != nil {
		return gate.Settings{}, false, fmt.Errorf("read settings of activity %d: %w", activityID, err)
	}
	return gate.Settings{ActivityID: activityID, OneWin: oneWin, SignedPath: signed, PathWindow: time.Duration(window) * time.Second}, true, nil
}

// SaveActivitySettings implements gate.Store: one upsert, create_time kept.
func (s *SettingStore) SaveActivitySettings(ctx context.Context, st gate.Settings) error {
	q := `INSERT INTO raffle_activity_setting (activity_id, one_win, signed_path, path_window_seconds)
		VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE one_win = VALUES(one_win), signed_path = VALUES(signed_path),
		path_window_seconds = VALUES(path_window_seconds)`
	if s.db.Dialect == SQLite {
		q = `INSERT INTO raffle_activity_setting (activity_id, one_win, signed_path, path_window_seconds)
		VALUES (?, ?, ?, ?) ON CONFLICT (activity_id) DO UPDATE SET one_win = excluded.one_win,
		signed_path = excluded.signed_path, path_window_seconds = excluded.path_window_seconds,
		update_time = CURRENT_TIMESTAMP`
	}
	if _, err := s.db.SQL.ExecContext(ctx, q, st.ActivityID, st.OneWin, st.SignedPath, int64(st.PathWindow/time.Second)); err != nil {
		return fmt.Errorf("save settings of activity %d: %w", st.ActivityID, err)
	}
	return nil
}
