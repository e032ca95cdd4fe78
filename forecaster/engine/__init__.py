"""Pure maths on arrays and frames: scales, forecasts, time to intervention, calibration,
anomalies, precursors, self-scoring. No database, no clock, no settings file."""
