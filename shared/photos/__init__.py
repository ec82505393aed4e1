"""Photos: ingest records from object events, the recognize and apply steps of an upload, albums,
corrections, failures and uploads. Everything that happens to one user photo on its way to an album."""
