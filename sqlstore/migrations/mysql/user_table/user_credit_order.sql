CREATE TABLE IF NOT EXISTS user_credit_order{{suffix}} (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  order_id varchar(32) NOT NULL,
  trade_name varchar(32) NOT NULL,
  trade_type varchar(8) NOT NULL,
  trade_amount decimal(10,2) NOT NULL,
  out_business_no varchar(64) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_order_id (order_id),
  UNIQUE KEY uq_out_business_no (out_business_no),
  KEY idx_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
