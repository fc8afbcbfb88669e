"""The event engine: merge of sources and virtual channels, compiled VI programs, tasks."""
