-- Red packet rain sessions and their armed prizes. A session row holds the quota version in
-- force (seq_no names it; a quota change is a compare-and-set on it), the prize lines asked
-- for as JSON and, once ended, its ledger as JSON. Every armed prize is a row, so the hot
-- state of a session can be rebuilt from here and rain_win after a Redis loss.

-- +goose Up
CREATE TABLE IF NOT EXISTS rain_session (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  title varchar(64) NOT NULL DEFAULT '',
  start_time datetime(3) NOT NULL,
  end_time datetime(3) NOT NULL,
  user_cap int NOT NULL,
  burst int NOT NULL,
  weights text NULL,
  total int NOT NULL,
  armed int NOT NULL,
  budget decimal(12,2) NULL,
  prizes mediumtext NOT NULL,
  seq_no bigint NOT NULL,
  session_state varchar(16) NOT NULL,
  ledger mediumtext NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  KEY idx_end_time (end_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rain_prize (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  session_id bigint unsigned NOT NULL,
  prize_index int NOT NULL,
  kind varchar(8) NOT NULL,
  amount decimal(12,2) NOT NULL DEFAULT 0.00,
  sku bigint NOT NULL DEFAULT 0,
  award_id int NOT NULL DEFAULT 0,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_session_prize (session_id, prize_index)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE IF EXISTS rain_prize;
DROP TABLE IF EXISTS rain_session;
