DROP TABLE insights;
DROP TABLE insight_scopes;
DROP TABLE insight_attributions;
DROP TABLE insight_counts;
