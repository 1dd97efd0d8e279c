"""MongoDB as every part of the proxy meets it: one way to build a client, the database LibreChat
uses, what a failure means, and MONGO_URI shown without its secrets. Users (attribution/) and
spend (budgets/) are read through it; it knows nothing of either."""
