"""How Freshet runs: settings, the local broker/Redis stack, topic provisioning."""
