"""The plan worker's local read model of the main database (SQLite): store, feed, lookup."""
