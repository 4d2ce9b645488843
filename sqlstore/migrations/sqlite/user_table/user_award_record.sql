CREATE TABLE IF NOT EXISTS user_award_record{{suffix}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  activity_id INTEGER NOT NULL,
  strategy_id INTEGER NOT NULL,
  order_id TEXT NOT NULL,
  award_id INTEGER NOT NULL,
  award_title TEXT NOT NULL DEFAULT '',
  award_time DATETIME NOT NULL,
  award_state TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (order_id)
);
CREATE INDEX IF NOT EXISTS idx_user_award_record{{suffix}}_user_id_activity_id_award_time ON user_award_record{{suffix}} (user_id, activity_id, award_time);
CREATE INDEX IF NOT EXISTS idx_user_award_record{{suffix}}_strategy_id_award_id ON user_award_record{{suffix}} (strategy_id, award_id);
