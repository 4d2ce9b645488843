-- Per-activity draw settings of bigmarket (interception, one win, signed draw paths). A
-- table of its own, so that big-market's tables keep their shape; an activity without a
-- row has the defaults (all off, window 0).

-- +goose Up
CREATE TABLE IF NOT EXISTS raffle_activity_setting (
  activity_id INTEGER NOT NULL PRIMARY KEY,
  one_win INTEGER NOT NULL DEFAULT 0,
  signed_path INTEGER NOT NULL DEFAULT 0,
  path_window_seconds INTEGER NOT NULL DEFAULT 0,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- +goose Down
DROP TABLE IF EXISTS raffle_activity_setting;
