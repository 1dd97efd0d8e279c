"""The end-to-end budget tests' fixtures, shared: a scripted Portkey, LibreChat's MongoDB, a budgeted proxy."""

from tests.servers.test_budget_charges import librechat, portkey, proxy  # noqa: F401
