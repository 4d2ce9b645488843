CREATE TABLE IF NOT EXISTS user_behavior_rebate_order{{suffix}} (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  user_id varchar(32) NOT NULL,
  order_id varchar(32) NOT NULL,
  behavior_type varchar(16) NOT NULL,
  rebate_desc varchar(128) NOT NULL DEFAULT '',
  rebate_type varchar(16) NOT NULL,
  rebate_config varchar(32) NOT NULL,
  out_business_no varchar(64) NOT NULL,
  biz_id varchar(128) NOT NULL,
  create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uq_order_id (order_id),
  UNIQUE KEY uq_biz_id (biz_id),
  KEY idx_user_id_out_business_no (user_id, out_business_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
