"""Names that ETA's Script Panels import, resolved inside the panel runtime only."""
