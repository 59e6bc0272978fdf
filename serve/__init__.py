"""The web page's server (its static files live in static/)."""
