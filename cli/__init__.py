"""The top layer, for humans: the command lines, the demo, live traffic and the service launcher."""
