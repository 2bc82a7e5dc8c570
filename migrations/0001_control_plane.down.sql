DROP TABLE api_tokens;
DROP TABLE trail_delivery_status;
DROP TABLE trails;
DROP TABLE accounts;
DROP TABLE organizations;
