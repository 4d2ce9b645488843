-- Red packet rain wins live in the winner's user database (one table per database, like
-- red_packet), so that recording a win and crediting it are one transaction. A win is
-- keyed by (session_id, user_id, win_no), its event's message id; a prize is won once per
-- database (uq_session_prize), and verify checks it across the databases.

-- +goose Up
CREATE TABLE IF NOT EXISTS rain_win (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  session_id bigint unsigned NOT NULL,
  user_id varchar(32) NOT NULL,
  win_no int NOT NULL,
  prize_index int NOT NULL,
  kind varchar(8) NOT NULL,
  amount decimal(12,2) NOT NULL DEFAULT 0.00,
  sku bigint NOT NULL DEFAULT 0,
  award_id int NOT NULL DEFAULT 0,
  win_time datetime(3) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_session_user_win (session_id, user_id, win_no),
  UNIQUE KEY uq_session_prize (session_id, prize_index),
  KEY idx_user_session (user_id, session_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE IF EXISTS rain_win;
