"""Worker processes and helpers the slow suites start or share."""
