DROP TABLE IF EXISTS alert_dead_letters;
DROP TABLE IF EXISTS alert_outbox;
DROP TABLE IF EXISTS alert_rules_version;
DROP TABLE IF EXISTS alert_rule_packs;
DROP TABLE IF EXISTS alert_rules;
