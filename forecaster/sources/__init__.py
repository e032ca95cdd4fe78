"""Where points come from: files, request logs and frames, validated on their way to the store."""
