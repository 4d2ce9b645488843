CREATE TABLE IF NOT EXISTS user_behavior_rebate_order{{suffix}} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  order_id TEXT NOT NULL,
  behavior_type TEXT NOT NULL,
  rebate_desc TEXT NOT NULL DEFAULT '',
  rebate_type TEXT NOT NULL,
  rebate_config TEXT NOT NULL,
  out_business_no TEXT NOT NULL,
  biz_id TEXT NOT NULL,
  create_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (order_id),
  UNIQUE (biz_id)
);
CREATE INDEX IF NOT EXISTS idx_user_behavior_rebate_order{{suffix}}_user_id_out_business_no ON user_behavior_rebate_order{{suffix}} (user_id, out_business_no);
