"""I/O: sockets, the packet path, the PF_KEY transport."""
