"""The key manager: IKE sessions joined to the stack by PF_KEY messages only."""
