"""Network plumbing shared by every protocol: listening sockets, TLS."""
