-- Per-activity draw settings of bigmarket (interception, one win, signed draw paths). A
-- table of its own, so that big-market's tables keep their shape; an activity without a
-- row has the defaults (all off, window 0).

-- +goose Up
CREATE TABLE IF NOT EXISTS raffle_activity_setting (
  activity_id bigint NOT NULL,
  one_win tinyint(1) NOT NULL DEFAULT 0,
  signed_path tinyint(1) NOT NULL DEFAULT 0,
  path_window_seconds int NOT NULL DEFAULT 0,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (activity_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE IF EXISTS raffle_activity_setting;
