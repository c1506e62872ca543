"""Box -> soft labels: strategies, the labels stage, label quality, inspection."""
