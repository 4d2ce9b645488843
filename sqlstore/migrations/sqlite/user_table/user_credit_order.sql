CREATE TABLE IF NOT EXISTS user_credit_order{{suffix}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  order_id TEXT NOT NULL,
  trade_name TEXT NOT NULL,
  trade_type TEXT NOT NULL,
  trade_amount TEXT NOT NULL,
  out_business_no TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (order_id),
  UNIQUE (out_business_no)
);
CREATE INDEX IF NOT EXISTS idx_user_credit_order{{suffix}}_user_id ON user_credit_order{{suffix}} (user_id);
