"""Metrics: functions of the store with an explicit window and filters, returning typed results."""
